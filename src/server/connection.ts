// One process-server connection: the handshake, then any number of streams
// (one per opened pair). Messages are handled one at a time, in order; items
// go to the engine in the order they arrive, checked there as they arrive,
// and are acknowledged once durable, never before. The parts are files of
// their own: handshake.ts, stream-table.ts, flow-control.ts, acks.ts,
// checksum-requests.ts.
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { Engine } from '../engine/engine';
import { EngineError } from '../engine/errors';
import type { StreamItem } from '../journal/items';
import type { Logger } from '../log';
import { CloseCode, PAIR_ID, WINDOW_BYTES, WIRE_FLAG_RESYNC } from '../protocol/constants';
import { ProtocolError, isProtocolErrorCode } from '../protocol/errors';
import { parseClientMessage, type AgentMessage, type ChecksumsRequest, type ClientMessage, type ControlItemMessage, type OpenMessage } from '../protocol/messages';
import { parseRecords, type WireRecord } from '../protocol/records';
import { releaseBuffer } from '../native';
import { AckSender } from './acks';
import type { ArrivalBudget } from './arrival-budget';
import { answerChecksums, checksumRequestProblem } from './checksum-requests';
import { FlowControl } from './flow-control';
import { Handshake } from './handshake';
import { StreamTable, type StreamHolder, type StreamRegistry, type StreamSession } from './stream-table';

/**
 * A binary message this big is freed as soon as every append of its items
 * has settled: the engine has copied what it keeps by then and nothing reads
 * the message again, but V8 would keep it (and its RSS) until a collection,
 * which at 4 KiB writes is often a full one (docs/decisions/0006-memory-the-applier-takes-over.md).
 */
const RELEASE_MESSAGE_BYTES = 64 * 1024;

/** A control item counts against the window as this much payload, so a flood of them is bounded too. */
const CONTROL_ITEM_BYTES = 64;

/** After a close the agent started: a peer that has not answered the close frame in this long is cut off. */
const CLOSE_GRACE_MS = 1000;

export interface ConnectionOptions {
  engine: Engine;
  agentId: string;
  passphrase: Buffer;
  log: Logger;
  registry: StreamRegistry;
  helloTimeoutMs: number;
  /** Wait before answering a bad proof, to slow down guessing. */
  authFailDelayMs: number;
  /** Stop reading the socket when this much is handed to the engine and not yet durable. */
  maxInflightBytes: number;
  /** What all connections together may hold (shared by every connection of the listener). */
  budget: ArrivalBudget;
  onClosed: (conn: ReplicationConnection) => void;
  /** Items of a pair are durable and acknowledged: their write payload bytes, and the seconds from their message's arrival to the ack. */
  onDurable?: (pairId: string, bytes: number, seconds: number) => void;
}

export class ReplicationConnection implements StreamHolder {
  readonly remote: string;
  readonly connectedSince = new Date();
  processServerId: string | null = null;
  private readonly ws: WebSocket;
  private readonly o: ConnectionOptions;
  private state: 'challenge' | 'ready' | 'closed' = 'challenge';
  private readonly handshake: Handshake;
  private readonly streams: StreamTable;
  readonly flow: FlowControl;
  private readonly acks: AckSender;
  /** Messages are handled one at a time, in order; opens and closes may wait inside. */
  private chain: Promise<void> = Promise.resolve();

  constructor(ws: WebSocket, socket: Duplex, remote: string, options: ConnectionOptions) {
    this.ws = ws;
    this.remote = remote;
    this.o = options;
    this.streams = new StreamTable(this, options.registry);
    this.flow = new FlowControl(ws, options.budget, options.maxInflightBytes);
    this.acks = new AckSender({
      send: (msg) => this.send(msg),
      streams: () => this.streams.all(),
      ready: () => this.state === 'ready',
      onAcked: options.onDurable,
    });
    this.handshake = new Handshake(
      { agentId: options.agentId, passphrase: options.passphrase, helloTimeoutMs: options.helloTimeoutMs, authFailDelayMs: options.authFailDelayMs, log: options.log, remote },
      {
        send: (msg) => this.send(msg),
        refuse: (err) => this.refuse(err),
        closeWith: (code, reason) => this.closeWith(code, reason),
        cutOff: () => {
          this.flow.cutOff();
          this.terminateSoon();
        },
      },
      socket,
    );
  }

  get authenticated(): boolean {
    return this.state === 'ready';
  }

  start(): void {
    this.handshake.start();
    this.ws.on('message', (data, isBinary) => {
      const arrived = performance.now();
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      // Taken now: a message whose appends settle at once (all its items
      // dropped) is released, and reads as empty, before this chain step ends.
      const bytes = buf.length;
      // Messages waiting their turn count against the window like those handed over.
      this.flow.queue(bytes);
      this.chain = this.chain
        .then(() => this.onMessage(buf, isBinary, arrived))
        .catch((err: unknown) => this.fail(err))
        .finally(() => this.flow.dequeue(bytes));
    });
    this.ws.on('close', () => this.onSocketClosed());
    this.ws.on('error', (err) => this.o.log.warn({ remote: this.remote, err: err.message }, 'replication connection error'));
    this.acks.start();
  }

  // ---- messages -----------------------------------------------------------

  private async onMessage(data: Buffer, isBinary: boolean, arrived: number): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state === 'challenge') {
      const processServerId = await this.handshake.onMessage(data, isBinary);
      if (processServerId === null || this.state !== 'challenge') return;
      this.state = 'ready';
      this.processServerId = processServerId;
      this.send({ type: 'welcome', sessionId: randomUUID(), windowBytes: WINDOW_BYTES });
      this.o.log.info({ remote: this.remote, processServerId }, 'process server connected');
      return;
    }
    if (isBinary) {
      const appends = this.onRecords(parseRecords(data), arrived);
      if (appends !== null && data.length >= RELEASE_MESSAGE_BYTES) void Promise.allSettled(appends).then(() => releaseBuffer(data));
      return;
    }
    await this.onControl(parseClientMessage(data.toString('utf8')), arrived);
  }

  private async onControl(msg: ClientMessage, arrived: number): Promise<void> {
    switch (msg.type) {
      case 'hello':
        throw new ProtocolError('malformed', 'hello after the handshake');
      case 'open':
        await this.onOpen(msg);
        return;
      case 'tag':
      case 'tick':
      case 'resync-start':
      case 'resync-end':
        this.onControlItem(msg, arrived);
        return;
      case 'checksums':
        this.onChecksums(msg);
        return;
      case 'close':
        await this.onClose(msg.stream);
        return;
    }
  }

  private async onOpen(msg: OpenMessage): Promise<void> {
    if (!PAIR_ID.test(msg.pair)) {
      this.send(new ProtocolError('bad-request', `pair id must match ${PAIR_ID.source}`).toMessage());
      return;
    }
    // Take the pair over from whoever has it: that stream ends before the new open drains.
    const tookOver = this.o.registry.takeOver(msg.pair);
    let opened: { durableSeq: number; needsResync: boolean; session: number };
    try {
      opened = await this.o.engine.openPair(msg.pair, msg.diskBytes, msg.sectorBytes);
    } catch (err) {
      const refusal = this.toProtocolError(err, null);
      this.o.log.warn({ pair: msg.pair, code: refusal.code, err: refusal.message, processServerId: this.processServerId }, 'open refused');
      this.send(refusal.toMessage());
      return;
    }
    const st = this.streams.open(msg.pair, opened.session, opened.durableSeq, msg.diskBytes, msg.sectorBytes);
    this.send({ type: 'opened', pair: msg.pair, stream: st.id, durableSeq: opened.durableSeq, needsResync: opened.needsResync });
    if (this.o.engine.status(msg.pair).state === 'target-unavailable') this.tellTargetState(st);
    this.o.log.info({ pair: msg.pair, stream: st.id, durableSeq: opened.durableSeq, needsResync: opened.needsResync, processServerId: this.processServerId, tookOver }, 'pair opened');
  }

  /** Hands a message's records over; returns the journaling begun, or null if some items wait in a stream's backlog. */
  private onRecords(records: readonly WireRecord[], arrived: number): Promise<void>[] | null {
    // Every record's stream is checked before anything is handed over: an unknown stream makes the whole message malformed.
    for (const r of records) this.streams.find(r.stream, r.seq);
    const byStream = new Map<StreamSession, StreamItem[]>();
    for (const r of records) {
      const st = this.streams.get(r.stream);
      if (!st || r.seq <= st.openDurableSeq) continue; // ended, or a resend of what is already durable
      const items = byStream.get(st) ?? [];
      items.push({ kind: 'write', seq: r.seq, time: r.time, offset: r.offset, data: r.payload, resync: (r.flags & WIRE_FLAG_RESYNC) !== 0, crc32c: r.crc32c });
      byStream.set(st, items);
    }
    const journaling: Promise<void>[] = [];
    let held = false;
    for (const [st, items] of byStream) {
      const handed = this.submit(st, items, arrived);
      if (handed !== null) journaling.push(handed);
      else if (st.gated) held = true;
    }
    return held ? null : journaling;
  }

  private onControlItem(msg: ControlItemMessage, arrived: number): void {
    const st = this.streams.find(msg.stream, msg.seq);
    if (st === null || msg.seq <= st.openDurableSeq) return;
    const item: StreamItem =
      msg.type === 'tag'
        ? { kind: 'tag', seq: msg.seq, time: msg.time, tagKind: msg.kind, name: msg.name, group: msg.group ?? null }
        : { kind: msg.type, seq: msg.seq, time: msg.time };
    this.submit(st, [item], arrived);
  }

  /**
   * The engine checks and accepts the items at once; the stream ends at the
   * first it refuses. Those accepted are journaled (or, while a checksum
   * request is answered, wait in the backlog). Returns the journaling begun.
   */
  private submit(st: StreamSession, items: StreamItem[], arrived: number): Promise<void> | null {
    let accepted: StreamItem[];
    let refusal: EngineError | null;
    try {
      ({ items: accepted, refusal } = this.o.engine.accept(st.pairId, items, st.session));
    } catch (err) {
      this.onAppendError(st, err);
      return null;
    }
    let journaling: Promise<void> | null = null;
    if (accepted.length > 0) {
      if (st.gated) st.backlog.push({ items: accepted, arrived });
      else journaling = this.journal(st, accepted, arrived);
    }
    if (refusal) this.endStream(st, this.toProtocolError(refusal, st));
    return journaling;
  }

  /** Makes accepted items durable; the ack follows. */
  private journal(st: StreamSession, items: StreamItem[], arrived: number): Promise<void> {
    let payloadBytes = 0;
    let controlItems = 0;
    for (const it of items) {
      if (it.kind === 'write') payloadBytes += it.data.length;
      else controlItems++;
    }
    const bytes = payloadBytes + CONTROL_ITEM_BYTES * controlItems;
    this.flow.handOver(bytes);
    const p: Promise<void> = this.o.engine
      .journal(st.pairId, items, st.session)
      .then((durable) => {
        this.acks.durable(st, durable, payloadBytes, arrived);
        this.tellTargetState(st);
      })
      .catch((err: unknown) => this.onAppendError(st, err))
      .finally(() => {
        st.pending.delete(p);
        this.flow.settle(bytes);
      });
    st.pending.add(p);
    return p;
  }

  /** Says target-unavailable once when a stream's target goes (informational: the stream goes on). */
  private tellTargetState(st: StreamSession): void {
    if (this.o.engine.targetAttached(st.pairId)) {
      st.toldTargetGone = false;
      return;
    }
    if (st.toldTargetGone || st.ended) return;
    st.toldTargetGone = true;
    const why = this.o.engine.targetProblem(st.pairId) ?? 'not attached';
    this.send(new ProtocolError('target-unavailable', `the target of ${st.pairId} is unavailable (${why}); items are still journaled`, { stream: st.id }).toMessage());
  }

  private onAppendError(st: StreamSession, err: unknown): void {
    const pe = this.toProtocolError(err, st);
    if (pe.scope === 'connection') {
      this.fail(pe);
      return;
    }
    if (pe.scope === 'info') {
      this.send(pe.toMessage());
      return;
    }
    // The engine keeps what it made durable; the stream ends at the refused item.
    this.endStream(st, pe);
  }

  private onChecksums(msg: ChecksumsRequest): void {
    const st = this.streams.find(msg.stream, null);
    if (st === null) return;
    const bad = checksumRequestProblem(msg, st);
    if (bad !== null) {
      this.o.log.warn({ pair: st.pairId, stream: st.id, err: bad }, 'checksum request refused');
      this.send(new ProtocolError('bad-request', `checksums ${msg.id}: ${bad}`, { stream: st.id }).toMessage());
      return;
    }
    // Items sent after the request wait until it is answered, so the sums reflect exactly what came before;
    // a request sent while another is answered waits its turn behind the items sent before it.
    const throughSeq = this.o.engine.acceptedSeq(st.pairId);
    if (st.gated) st.backlog.push({ checksums: msg, throughSeq });
    else this.answer(st, msg, throughSeq);
  }

  private answer(st: StreamSession, msg: ChecksumsRequest, throughSeq: number): void {
    st.gated = true;
    void answerChecksums(this.o.engine, st, msg, throughSeq)
      .then((answer) => this.send(answer))
      .catch((err: unknown) => {
        const pe = this.toProtocolError(err, st);
        this.send(new ProtocolError(pe.scope === 'connection' ? 'internal' : 'bad-request', `checksums ${msg.id}: ${pe.message}`, { stream: st.id }).toMessage());
      })
      .finally(() => {
        st.gated = false;
        while (!st.gated) {
          const next = st.backlog.shift();
          if (next === undefined) break;
          if ('items' in next) this.journal(st, next.items, next.arrived);
          else this.answer(st, next.checksums, next.throughSeq);
        }
      });
  }

  private async onClose(streamId: number): Promise<void> {
    const st = this.streams.find(streamId, null);
    if (st === null) return;
    while (st.gated || st.pending.size > 0) {
      await Promise.all([...st.pending]);
      if (st.gated) await new Promise((r) => setTimeout(r, 5));
    }
    this.send({ type: 'closed', stream: st.id, durableSeq: st.durableSeq });
    this.streams.close(st);
    this.o.log.info({ pair: st.pairId, stream: st.id, durableSeq: st.durableSeq }, 'stream closed');
  }

  // ---- endings ------------------------------------------------------------

  /** Ends one stream with an error; the connection stays. */
  endStream(st: StreamSession, err: ProtocolError): void {
    if (!this.streams.endForError(st)) return;
    this.send(err.toMessage());
    this.o.log.warn({ pair: st.pairId, stream: st.id, code: err.code, seq: err.seq, err: err.message }, 'stream ended');
  }

  private toProtocolError(err: unknown, st: StreamSession | null): ProtocolError {
    if (err instanceof ProtocolError) return err;
    const where = { stream: st?.id ?? null, seq: err instanceof EngineError ? err.seq : null };
    if (err instanceof EngineError) {
      if (err.code === 'not-open') return new ProtocolError('internal', err.message, where);
      if (isProtocolErrorCode(err.code)) return new ProtocolError(err.code, err.message, where);
    }
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code === 'retention-full') return new ProtocolError('retention-full', (err as Error).message, where);
    this.o.log.error({ err, remote: this.remote }, 'internal error on a replication connection');
    return new ProtocolError('internal', err instanceof Error ? err.message : String(err), where);
  }

  /** An error that ends the connection (or, if it is narrower, what it ends). */
  private fail(err: unknown): void {
    const pe = this.toProtocolError(err, null);
    if (pe.scope === 'connection') {
      this.refuse(pe);
      return;
    }
    const st = pe.stream !== null ? this.streams.get(pe.stream) : undefined;
    if (pe.scope === 'stream' && st) this.endStream(st, pe);
    else this.send(pe.toMessage());
  }

  /** Sends the error, then closes with its close code. */
  private refuse(err: ProtocolError): void {
    this.send(err.toMessage());
    this.closeWith(err.closeCode ?? CloseCode.badRequest, err.message);
  }

  private closeWith(code: number, reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.ws.close(code, reason.slice(0, 120));
    this.o.log.info({ remote: this.remote, code, reason }, 'replication connection closed by the agent');
  }

  /** Stops the connection on agent shutdown: nothing more is read. */
  shutdown(): void {
    this.acks.flush();
    this.closeWith(1001, 'agent shutting down');
    this.terminateSoon();
  }

  private terminateSoon(): void {
    setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS).unref();
  }

  /** Appends handed to the engine and not yet settled. */
  async drain(): Promise<void> {
    await this.chain.catch(() => undefined);
    for (const st of this.streams.all()) await Promise.all([...st.pending]);
  }

  private onSocketClosed(): void {
    if (this.state === 'ready') {
      const pairs = [...this.streams.all()].filter((st) => !st.ended).map((st) => st.pairId);
      this.o.log.info({ remote: this.remote, processServerId: this.processServerId, pairs }, 'process server disconnected');
    }
    this.state = 'closed';
    this.handshake.finish();
    this.acks.stop();
    this.streams.endAll();
    this.flow.closed();
    this.o.onClosed(this);
  }

  private send(msg: AgentMessage | ReturnType<ProtocolError['toMessage']>): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(JSON.stringify(msg));
  }
}
