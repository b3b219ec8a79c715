// One process-server connection: the handshake, then any number of streams
// (one per opened pair). Items go to the engine in the order they arrive;
// acks follow the engine's group commit, never before.
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { Engine } from '../engine/engine';
import { EngineError } from '../engine/errors';
import type { StreamItem } from '../journal/items';
import type { Logger } from '../log';
import {
  CloseCode,
  MAX_CHECKSUM_BLOCK,
  MAX_CHECKSUM_BLOCKS,
  MAX_HANDSHAKE_BYTES,
  MIN_CHECKSUM_BLOCK,
  PAIR_ID,
  PROTOCOL_VERSION,
  WINDOW_BYTES,
  WIRE_FLAG_RESYNC,
} from '../protocol/constants';
import { ProtocolError, isProtocolErrorCode } from '../protocol/errors';
import { parseClientMessage, type AgentMessage, type ChecksumsRequest, type ClientMessage, type ControlItemMessage, type OpenMessage } from '../protocol/messages';
import { parseRecords, recordProblem, type WireRecord } from '../protocol/records';
import { releaseBuffer } from '../native';
import type { ArrivalBudget, BudgetMember } from './arrival-budget';
import { blockChecksums } from './checksums';
import { newNonce, proofMatches } from './handshake';

/**
 * A binary message this big is freed as soon as every append of its items
 * has settled: the engine has copied what it keeps by then and nothing reads
 * the message again, but V8 would keep it (and its RSS) until a collection,
 * which at 4 KiB writes is often a full one (docs/design-notes.md, "Arrived
 * messages are freed when their items are durable").
 */
const RELEASE_MESSAGE_BYTES = 64 * 1024;

/** Which stream currently owns each pair, across connections (for takeover). */
export type StreamRegistry = Map<string, StreamSession>;

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
  onAuthenticated: (conn: ReplicationConnection) => void;
  onClosed: (conn: ReplicationConnection) => void;
  /** Items of a pair are durable and acknowledged: their write payload bytes, and the seconds from their message's arrival to the ack. */
  onDurable?: (pairId: string, bytes: number, seconds: number) => void;
}

export interface StreamSession {
  id: number;
  pairId: string;
  conn: ReplicationConnection;
  /** The engine's session token for this open. */
  session: number;
  diskBytes: number;
  sectorBytes: number;
  /** durableSeq answered at open: records at or below it are resends. */
  openDurableSeq: number;
  /** Last seq accepted on this stream. */
  lastSeq: number;
  durableSeq: number;
  ackedSeq: number;
  ended: boolean;
  pending: Set<Promise<void>>;
  /** While a checksum request is computed, later items wait here. */
  gated: boolean;
  /** target-unavailable was said on this stream and the target has not come back since. */
  toldTargetGone: boolean;
  backlog: Array<{ items: StreamItem[]; arrived: number }>;
}

/** Items made durable whose acknowledgement is not sent yet: the latency metric is taken when it is. */
interface DurableUnacked {
  pairId: string;
  bytes: number;
  /** performance.now() when the message holding them arrived. */
  arrived: number;
}

export class ReplicationConnection implements BudgetMember {
  readonly remote: string;
  readonly connectedSince = new Date();
  processServerId: string | null = null;
  private readonly ws: WebSocket;
  /** The TLS socket under `ws`, read directly only to count what arrives before the handshake ends. */
  private readonly socket: Duplex;
  private readonly o: ConnectionOptions;
  private state: 'challenge' | 'ready' | 'closed' = 'challenge';
  private nonce = '';
  private helloTimer: NodeJS.Timeout | null = null;
  private readonly streams = new Map<number, StreamSession>();
  /** Streams ended by an error: records still in flight for them are dropped, not malformed. */
  private readonly endedStreams = new Set<number>();
  private nextStream = 1;
  private inflightBytes = 0;
  /** Bytes of messages received and not yet handled. */
  private queuedBytes = 0;
  private paused = false;
  /** Refused for what it sent before its hello: never read again. */
  private cutOff = false;
  private ackScheduled = false;
  private ackTimer: NodeJS.Timeout | null = null;
  private durableUnacked: DurableUnacked[] = [];
  /** Messages are handled one at a time, in order; opens and closes may wait inside. */
  private chain: Promise<void> = Promise.resolve();

  constructor(ws: WebSocket, socket: Duplex, remote: string, options: ConnectionOptions) {
    this.ws = ws;
    this.socket = socket;
    this.remote = remote;
    this.o = options;
  }

  get authenticated(): boolean {
    return this.state === 'ready';
  }

  start(): void {
    this.nonce = newNonce();
    this.send({ type: 'challenge', protocol: PROTOCOL_VERSION, agentId: this.o.agentId, nonce: this.nonce });
    this.helloTimer = setTimeout(() => this.closeWith(CloseCode.helloTimeout, 'no hello within 10 s'), this.o.helloTimeoutMs);
    this.limitHandshakeBytes();
    this.ws.on('message', (data, isBinary) => {
      const arrived = performance.now();
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      // Taken now: a message whose appends settle at once (all its items
      // dropped) is released, and reads as empty, before this chain step ends.
      const bytes = buf.length;
      // Messages waiting their turn count against the window like those handed over.
      this.queuedBytes += bytes;
      this.updatePause();
      this.chain = this.chain
        .then(() => this.onMessage(buf, isBinary, arrived))
        .catch((err: unknown) => this.fail(err))
        .finally(() => {
          this.queuedBytes -= bytes;
          this.updatePause();
        });
    });
    this.ws.on('close', () => this.onSocketClosed());
    this.ws.on('error', (err) => this.o.log.warn({ remote: this.remote, err: err.message }, 'replication connection error'));
    this.ackTimer = setInterval(() => this.flushAcks(), 200);
    this.ackTimer.unref();
  }

  /**
   * Before its hello is accepted a peer may send MAX_HANDSHAKE_BYTES (4 KiB),
   * counted off the socket as bytes arrive, compressed or not: ws would
   * otherwise assemble a whole message of up to 64 MiB before the agent sees
   * it, for each of the 64 connections allowed in their handshake. Past the
   * limit the peer is refused as for any message but a hello, and nothing
   * more is read from it.
   */
  private limitHandshakeBytes(): void {
    let received = 0;
    const count = (chunk: Buffer): void => {
      if (this.state !== 'challenge') {
        this.socket.off('data', count);
        return;
      }
      received += chunk.length;
      if (received <= MAX_HANDSHAKE_BYTES) return;
      this.socket.off('data', count);
      this.o.log.warn({ remote: this.remote, bytes: received }, 'handshake refused: too much sent before the hello was accepted');
      this.refuse(new ProtocolError('auth-failed', `more than ${MAX_HANDSHAKE_BYTES} bytes sent before the handshake ended`));
      this.cutOff = true;
      this.ws.pause();
      this.terminateSoon();
    };
    this.socket.on('data', count);
  }

  // ---- messages -----------------------------------------------------------

  private async onMessage(data: Buffer, isBinary: boolean, arrived: number): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state === 'challenge') {
      await this.onHandshakeMessage(data, isBinary);
      return;
    }
    if (isBinary) {
      const appends = this.onRecords(parseRecords(data), arrived);
      if (appends !== null && data.length >= RELEASE_MESSAGE_BYTES) void Promise.allSettled(appends).then(() => releaseBuffer(data));
      return;
    }
    const msg = parseClientMessage(data.toString('utf8'));
    await this.onControl(msg, arrived);
  }

  private async onHandshakeMessage(data: Buffer, isBinary: boolean): Promise<void> {
    let msg: ClientMessage | null = null;
    if (!isBinary) {
      try {
        msg = parseClientMessage(data.toString('utf8'));
      } catch {
        msg = null;
      }
    }
    if (msg === null || msg.type !== 'hello') {
      this.refuse(new ProtocolError('auth-failed', 'the first message must be a hello'));
      return;
    }
    if (msg.protocol !== PROTOCOL_VERSION) {
      this.refuse(new ProtocolError('protocol-version', `protocol ${msg.protocol} is not supported; this agent speaks protocol ${PROTOCOL_VERSION}`));
      return;
    }
    if (!proofMatches(this.o.passphrase, this.nonce, msg.processServerId, msg.proof)) {
      this.o.log.warn({ remote: this.remote, processServerId: msg.processServerId }, 'handshake refused: bad proof');
      if (this.helloTimer) clearTimeout(this.helloTimer);
      await new Promise((r) => setTimeout(r, this.o.authFailDelayMs));
      this.refuse(new ProtocolError('auth-failed', 'the proof does not match: check the passphrase'));
      return;
    }
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.state = 'ready';
    this.processServerId = msg.processServerId;
    this.send({ type: 'welcome', sessionId: randomUUID(), windowBytes: WINDOW_BYTES });
    this.o.log.info({ remote: this.remote, processServerId: msg.processServerId }, 'process server connected');
    this.o.onAuthenticated(this);
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
    const previous = this.o.registry.get(msg.pair);
    if (previous) previous.conn.endStream(previous, new ProtocolError('superseded', `pair ${msg.pair} was opened on another connection`, { stream: previous.id }));
    let opened: { durableSeq: number; needsResync: boolean; session: number };
    try {
      opened = await this.o.engine.openPair(msg.pair, msg.diskBytes, msg.sectorBytes);
    } catch (err) {
      this.send(this.toProtocolError(err, null).toMessage());
      return;
    }
    const st: StreamSession = {
      id: this.nextStream++,
      pairId: msg.pair,
      conn: this,
      session: opened.session,
      diskBytes: msg.diskBytes,
      sectorBytes: msg.sectorBytes,
      openDurableSeq: opened.durableSeq,
      lastSeq: opened.durableSeq,
      durableSeq: opened.durableSeq,
      ackedSeq: opened.durableSeq,
      ended: false,
      pending: new Set(),
      gated: false,
      backlog: [],
      toldTargetGone: false,
    };
    this.streams.set(st.id, st);
    this.o.registry.set(msg.pair, st);
    this.send({ type: 'opened', pair: msg.pair, stream: st.id, durableSeq: opened.durableSeq, needsResync: opened.needsResync });
    const status = this.o.engine.status(msg.pair);
    if (status.state === 'target-unavailable') this.tellTargetState(st);
    this.o.log.info({ pair: msg.pair, stream: st.id, durableSeq: opened.durableSeq, processServerId: this.processServerId }, 'pair opened');
  }

  /** The stream a message names, or null if it ended for an error (the message is dropped). */
  private streamFor(id: number, seq: number | null): StreamSession | null {
    const st = this.streams.get(id);
    if (st && !st.ended) return st;
    if (this.endedStreams.has(id)) return null;
    throw new ProtocolError('malformed', `stream ${id} is not open on this connection`, { stream: id, seq });
  }

  /** Hands a message's records over; returns the appends made, or null if some items wait in a stream's backlog. */
  private onRecords(records: readonly WireRecord[], arrived: number): Promise<void>[] | null {
    // Every record's stream is checked before anything is handed over: an unknown stream makes the whole message malformed.
    for (const r of records) this.streamFor(r.stream, r.seq);
    const byStream = new Map<StreamSession, WireRecord[]>();
    for (const r of records) {
      const st = this.streams.get(r.stream);
      if (!st || st.ended) continue;
      const list = byStream.get(st) ?? [];
      list.push(r);
      byStream.set(st, list);
    }
    const appends: Promise<void>[] = [];
    let held = false;
    for (const [st, recs] of byStream) {
      const items: StreamItem[] = [];
      let refusal: ProtocolError | null = null;
      for (const r of recs) {
        if (r.seq <= st.openDurableSeq) continue; // a resend of what is already durable
        const problem = recordProblem(r, st.sectorBytes, st.diskBytes);
        if (problem !== null) {
          refusal = new ProtocolError('bad-record', `pair ${st.pairId} seq ${r.seq}: ${problem}`, { stream: st.id, seq: r.seq });
          break;
        }
        if (r.seq !== st.lastSeq + 1) {
          refusal = new ProtocolError('seq-gap', `pair ${st.pairId}: expected seq ${st.lastSeq + 1}, got ${r.seq}`, { stream: st.id, seq: r.seq });
          break;
        }
        st.lastSeq = r.seq;
        // recordProblem has checked the payload against its crc32c.
        items.push({ kind: 'write', seq: r.seq, time: r.time, offset: r.offset, data: r.payload, resync: (r.flags & WIRE_FLAG_RESYNC) !== 0, crc32c: r.crc32c });
      }
      const appended = this.submit(st, items, arrived);
      if (appended !== null) appends.push(appended);
      else if (items.length > 0) held = true;
      if (refusal) this.endStream(st, refusal);
    }
    return held ? null : appends;
  }

  private onControlItem(msg: ControlItemMessage, arrived: number): void {
    const st = this.streamFor(msg.stream, msg.seq);
    if (st === null || msg.seq <= st.openDurableSeq) return;
    if (msg.seq !== st.lastSeq + 1) {
      this.endStream(st, new ProtocolError('seq-gap', `pair ${st.pairId}: expected seq ${st.lastSeq + 1}, got ${msg.seq}`, { stream: st.id, seq: msg.seq }));
      return;
    }
    st.lastSeq = msg.seq;
    const item: StreamItem =
      msg.type === 'tag'
        ? { kind: 'tag', seq: msg.seq, time: msg.time, tagKind: msg.kind, name: msg.name, group: msg.group ?? null }
        : { kind: msg.type, seq: msg.seq, time: msg.time };
    this.submit(st, [item], arrived);
  }

  /** Hands items to the engine (the ack follows durability); returns the append, or null if there was none yet. */
  private submit(st: StreamSession, items: StreamItem[], arrived: number): Promise<void> | null {
    if (items.length === 0) return null;
    if (st.gated) {
      st.backlog.push({ items, arrived });
      return null;
    }
    let payloadBytes = 0;
    let controlItems = 0;
    for (const it of items) {
      if (it.kind === 'write') payloadBytes += it.data.length;
      else controlItems++;
    }
    // A control item counts against the window as a little payload, so a flood of them is bounded too.
    const bytes = payloadBytes + 64 * controlItems;
    this.inflightBytes += bytes;
    this.updatePause();
    const p: Promise<void> = this.o.engine
      .append(st.pairId, items, st.session)
      .then((durable) => {
        if (durable > st.durableSeq) st.durableSeq = durable;
        this.durableUnacked.push({ pairId: st.pairId, bytes: payloadBytes, arrived });
        this.scheduleAck();
        this.tellTargetState(st);
      })
      .catch((err: unknown) => this.onAppendError(st, err))
      .finally(() => {
        st.pending.delete(p);
        this.inflightBytes -= bytes;
        this.updatePause();
      });
    st.pending.add(p);
    return p;
  }

  /**
   * Stops reading the socket while more than maxInflightBytes is held, or
   * anything while all connections together are over the budget; reads again
   * below half of it, once the budget has room or this holds nothing.
   */
  private updatePause(): void {
    const held = this.inflightBytes + this.queuedBytes;
    const budget = this.o.budget;
    budget.update(this, held);
    if (!this.paused && (held > this.o.maxInflightBytes || (held > 0 && budget.exceeded))) {
      this.paused = true;
      this.ws.pause();
      budget.setStopped(this, true);
    } else if (this.paused && !this.cutOff && held <= this.o.maxInflightBytes / 2 && (held === 0 || budget.roomy)) {
      this.paused = false;
      this.ws.resume();
      budget.setStopped(this, false);
    }
  }

  recheckReading(): void {
    this.updatePause();
  }

  /** Says target-unavailable once when a stream's target goes (informational: the stream goes on). */
  private tellTargetState(st: StreamSession): void {
    const attached = this.o.engine.targetAttached(st.pairId);
    if (attached) {
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
    const st = this.streamFor(msg.stream, null);
    if (st === null) return;
    const blocks = Math.ceil(msg.length / msg.blockBytes);
    const bad =
      msg.blockBytes < MIN_CHECKSUM_BLOCK || msg.blockBytes > MAX_CHECKSUM_BLOCK || (msg.blockBytes & (msg.blockBytes - 1)) !== 0
        ? `blockBytes must be a power of two from ${MIN_CHECKSUM_BLOCK} to ${MAX_CHECKSUM_BLOCK}`
        : msg.length === 0
          ? 'length must be greater than 0'
          : blocks > MAX_CHECKSUM_BLOCKS
            ? `at most ${MAX_CHECKSUM_BLOCKS} blocks per request (asked for ${blocks})`
            : msg.offset % st.sectorBytes !== 0
              ? `offset must be a multiple of ${st.sectorBytes}`
              : msg.offset + msg.length > st.diskBytes
                ? `${msg.offset}+${msg.length} is past the end of the ${st.diskBytes}-byte disk`
                : null;
    if (bad !== null) {
      this.send({ ...new ProtocolError('bad-request', `checksums ${msg.id}: ${bad}`, { stream: st.id }).toMessage() });
      return;
    }
    // Items sent after the request wait until it is answered, so the sums reflect exactly what came before.
    st.gated = true;
    void (async () => {
      try {
        await Promise.all([...st.pending]);
        await this.o.engine.waitApplied(st.pairId, st.lastSeq);
        const target = this.o.engine.history(st.pairId).target;
        if (target === null) throw new EngineError('target-unavailable', `the target of ${st.pairId} is unavailable: no checksums can be computed`, st.pairId);
        const sha256 = await blockChecksums(target, st.diskBytes, msg.offset, msg.length, msg.blockBytes);
        this.send({ type: 'checksums', stream: st.id, id: msg.id, offset: msg.offset, blockBytes: msg.blockBytes, sha256 });
      } catch (err) {
        const pe = this.toProtocolError(err, st);
        this.send(new ProtocolError(pe.scope === 'connection' ? 'internal' : 'bad-request', `checksums ${msg.id}: ${pe.message}`, { stream: st.id }).toMessage());
      } finally {
        st.gated = false;
        const backlog = st.backlog;
        st.backlog = [];
        for (const b of backlog) this.submit(st, b.items, b.arrived);
      }
    })();
  }

  private async onClose(streamId: number): Promise<void> {
    const st = this.streamFor(streamId, null);
    if (st === null) return;
    while (st.gated || st.pending.size > 0) {
      await Promise.all([...st.pending]);
      if (st.gated) await new Promise((r) => setTimeout(r, 5));
    }
    this.send({ type: 'closed', stream: st.id, durableSeq: st.durableSeq });
    st.ended = true;
    this.streams.delete(st.id);
    if (this.o.registry.get(st.pairId) === st) this.o.registry.delete(st.pairId);
    this.o.log.info({ pair: st.pairId, stream: st.id, durableSeq: st.durableSeq }, 'stream closed');
  }

  // ---- acks ---------------------------------------------------------------

  private scheduleAck(): void {
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    setImmediate(() => {
      this.ackScheduled = false;
      this.flushAcks();
    });
  }

  private flushAcks(): void {
    if (this.state === 'ready') {
      for (const st of this.streams.values()) {
        if (st.ended || st.durableSeq <= st.ackedSeq) continue;
        st.ackedSeq = st.durableSeq;
        this.send({ type: 'ack', stream: st.id, durableSeq: st.durableSeq });
      }
    }
    // From arrival to the ack handed to the socket: what the agent held the items for.
    const now = performance.now();
    for (const d of this.durableUnacked) this.o.onDurable?.(d.pairId, d.bytes, (now - d.arrived) / 1000);
    this.durableUnacked = [];
  }

  // ---- endings ------------------------------------------------------------

  /** Ends one stream with an error; the connection stays. */
  endStream(st: StreamSession, err: ProtocolError): void {
    if (st.ended) return;
    st.ended = true;
    st.backlog = [];
    this.streams.delete(st.id);
    this.endedStreams.add(st.id);
    if (this.o.registry.get(st.pairId) === st) this.o.registry.delete(st.pairId);
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
    this.flushAcks();
    this.closeWith(1001, 'agent shutting down');
    this.terminateSoon();
  }

  /** After a close the agent started: a peer that has not answered the close frame within a second is cut off. */
  private terminateSoon(): void {
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }

  /** Appends handed to the engine and not yet settled. */
  async drain(): Promise<void> {
    await this.chain.catch(() => undefined);
    for (const st of this.streams.values()) await Promise.all([...st.pending]);
  }

  private onSocketClosed(): void {
    this.state = 'closed';
    if (this.helloTimer) clearTimeout(this.helloTimer);
    if (this.ackTimer) clearInterval(this.ackTimer);
    for (const st of this.streams.values()) {
      st.ended = true;
      if (this.o.registry.get(st.pairId) === st) this.o.registry.delete(st.pairId);
    }
    // What its appends still hold stays counted until they settle.
    this.o.budget.setStopped(this, false);
    this.o.onClosed(this);
  }

  private send(msg: AgentMessage | ReturnType<ProtocolError['toMessage']>): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(JSON.stringify(msg));
  }
}
