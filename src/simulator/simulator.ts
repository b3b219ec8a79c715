// A process server in miniature: streams synthetic workloads into an agent,
// keeps a compact model of every source disk, resumes from durableSeq after
// any disconnect, and performs delta resyncs.
import { createHash } from 'node:crypto';
import { MtagentError } from '../errors';
import type { ChecksumsResponse, ErrorMessage } from '../protocol/messages';
import type { WriteRecordInput } from '../protocol/records';
import { AgentRefusal, ReplicationClient, type ClientOptions } from './client';
import { SourceModel, type ModelItem } from './model';
import { makeWorkload, rng, type Workload, type WorkloadName } from './workload';

/** Refusals after which the agent takes no more of a pair until an operator acts (commit, the configuration). */
const PAIR_ENDING = new Set(['failed-over', 'unknown-pair']);
export interface SimPair {
  id: string;
  diskBytes: number;
  sectorBytes?: number;
}

export interface SimulateOptions {
  client: ClientOptions;
  pairs: readonly SimPair[];
  workload: WorkloadName;
  ioBytes: number;
  /** null: flat out. */
  rateBytesPerSecond: number | null;
  /** Stop after this long (seconds), or after `items` items per pair, whichever first. */
  durationSeconds: number | null;
  items: number | null;
  /** An app tag every N items of a pair (0: none). */
  tagEvery: number;
  /** Tags carry `<group>-<n>` as their group, so pairs share group points. */
  group: string | null;
  tickSeconds: number;
  seed: number;
  /** Records per binary message, up to this many bytes. */
  messageBytes: number;
  /** Reconnect and resume after a dropped connection (else the error ends the run). */
  reconnect: boolean;
  /** Items sent in the first this many seconds do not count towards `steadyAckLatencyMs` (default 1). */
  latencyWarmupSeconds?: number;
  /**
   * Answer `needsResync` as a process server does: an initial full copy of a
   * pair this simulator has streamed nothing to, a delta resync of one it
   * has; a pair the agent holds items of that this simulator never streamed
   * is taken over (its disk counts as zeros) and delta-resynced.
   */
  resyncWhenAsked?: boolean;
  /** Every acknowledgement that moves a pair's acked seq forward. */
  onAck?: (pairId: string, durableSeq: number) => void;
  log?: (line: string) => void;
}

export interface PairReport {
  pair: string;
  sentSeq: number;
  ackedSeq: number;
  bytesAcked: number;
  /** Why the agent stopped taking the pair (failed over, removed) and the simulator stopped streaming it; null if it did not. */
  endedBy: string | null;
}

export interface LatencySummary {
  p50: number;
  p99: number;
  samples: number;
}

export interface SimulateReport {
  seconds: number;
  itemsAcked: number;
  bytesAcked: number;
  reconnects: number;
  streamErrors: Record<string, number>;
  ackLatencyMs: LatencySummary;
  /** The same for items sent after the warm-up: both ends past start-up (compiled code, first allocations). */
  steadyAckLatencyMs: LatencySummary;
  pairs: PairReport[];
}

export interface ResyncReport {
  pair: string;
  blocks: number;
  differing: number;
  bytesSent: number;
  diskBytes: number;
  checksumBytes: number;
}

interface PairState {
  cfg: SimPair;
  sector: number;
  model: SourceModel;
  workload: Workload;
  random: () => number;
  stream: number | null;
  sentSeq: number;
  ackedSeq: number;
  /** (seq, bytes, sentAt) of sent and not yet acknowledged items, oldest first. */
  unacked: Array<{ seq: number; bytes: number; sentAt: number }>;
  unackedBytes: number;
  bytesAcked: number;
  lastItemAt: number;
  tagCount: number;
  /** A tag round all pairs take part in (a VSS snapshot tags every disk at once). */
  pendingTag: number | null;
  reopen: boolean;
  reopenAfter: number;
  done: boolean;
  /** Why the agent stopped taking this pair (failed over, removed), and the simulator with it; null while it streams. */
  endedBy: string | null;
  resyncWanted: boolean;
  /** The initial full copy being streamed, ahead of the workload; null when none is. */
  initialCopy: Workload | null;
  /** How long into the run its initial copy ended (ms; 0: none this run): the change workload's duration counts from there. */
  copyEndedMs: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

export class Simulator {
  readonly options: SimulateOptions;
  readonly pairs = new Map<string, PairState>();
  client: ReplicationClient | null = null;
  private stopped = false;
  private reconnects = 0;
  private readonly streamErrors: Record<string, number> = {};
  private readonly latencies: number[] = [];
  private readonly steadyLatencies: number[] = [];
  private startedAt = 0;
  /** performance.now() from which sent items count as steady. */
  private steadyFrom = 0;
  private progress: (() => void) | null = null;
  readonly resyncReports: ResyncReport[] = [];
  /** Items generated over all pairs, and tag rounds started, for tags taken together. */
  private generated = 0;
  private tagRounds = 0;
  /** Which pair goes first in a round: turns, so one pair cannot take the whole rate. */
  private turn = 0;

  constructor(options: SimulateOptions) {
    this.options = options;
    for (const p of options.pairs) {
      const random = rng(options.seed * 7919 + [...p.id].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 0));
      const sector = p.sectorBytes ?? 512;
      const model = new SourceModel(p.id, p.diskBytes, options.seed);
      this.pairs.set(p.id, {
        cfg: p,
        sector,
        model,
        workload: makeWorkload(options.workload, p.diskBytes, options.ioBytes, sector, random),
        random,
        stream: null,
        sentSeq: 0,
        ackedSeq: 0,
        unacked: [],
        unackedBytes: 0,
        bytesAcked: 0,
        lastItemAt: 0,
        tagCount: 0,
        pendingTag: null,
        reopen: false,
        reopenAfter: 0,
        done: false,
        endedBy: null,
        resyncWanted: false,
        initialCopy: null,
        copyEndedMs: 0,
      });
    }
  }

  model(pairId: string): SourceModel {
    const p = this.pairs.get(pairId);
    if (!p) throw new MtagentError('unknown-pair', `the simulator has no pair ${pairId}`);
    return p.model;
  }

  /** Asks for a delta resync of a pair at the next opportunity. */
  requestResync(pairId: string): void {
    const p = this.pairs.get(pairId);
    if (p) p.resyncWanted = true;
  }

  stop(): void {
    this.stopped = true;
    this.progress?.();
  }

  private log(line: string): void {
    this.options.log?.(line);
  }

  // ---- connection -----------------------------------------------------

  private async connectAndOpen(): Promise<void> {
    const client = new ReplicationClient(this.options.client);
    await client.connect();
    this.client = client;
    client.on('ack', (stream, durableSeq) => this.onAck(stream, durableSeq));
    client.on('refusal', (e) => this.onStreamError(e));
    client.on('close', () => this.progress?.());
    for (const p of this.pairs.values()) if (p.endedBy === null) await this.openPair(p);
  }

  /** The agent takes no more of this pair (failed over, removed from its configuration): it stops, the others go on. */
  private endPair(p: PairState, code: string, message: string): void {
    this.log(`stopped streaming ${p.cfg.id}: ${code}: ${message}; the other pairs go on`);
    p.stream = null;
    p.reopen = false;
    p.done = true;
    p.endedBy = `${code}: ${message}`;
    // What the agent did not acknowledge of it will never be: nothing waits for it.
    p.unacked = [];
    p.unackedBytes = 0;
  }

  private async openPair(p: PairState): Promise<void> {
    const client = this.client as ReplicationClient;
    let opened: Awaited<ReturnType<ReplicationClient['open']>>;
    try {
      opened = await client.open(p.cfg.id, p.cfg.diskBytes, p.sector);
    } catch (err) {
      if (err instanceof AgentRefusal && PAIR_ENDING.has(err.code)) return this.endPair(p, err.code, err.message);
      throw err;
    }
    const asked = this.options.resyncWhenAsked ?? false;
    if (opened.durableSeq > p.model.lastSeq && asked && p.model.lastSeq === 0) {
      this.log(`the agent holds seq ${opened.durableSeq} of ${p.cfg.id}, which this simulator did not stream: taking the pair over with a delta resync`);
      p.model.adopt(opened.durableSeq);
      p.resyncWanted = true;
    }
    if (opened.durableSeq > p.model.lastSeq) {
      throw new MtagentError(
        'model-behind',
        `the agent already holds seq ${opened.durableSeq} of ${p.cfg.id}, more than this simulator streamed (${p.model.lastSeq}); use a fresh pair (or a fresh installation) to simulate against`,
      );
    }
    p.stream = opened.stream;
    p.reopen = false;
    this.noteAcked(p, opened.durableSeq);
    // Everything after durableSeq is sent again, from the model.
    p.sentSeq = opened.durableSeq;
    p.unacked = [];
    p.unackedBytes = 0;
    this.resendFrom(p);
    if (asked && opened.needsResync && !this.resyncUnderWay(p, opened.durableSeq)) {
      if (p.model.lastSeq === 0 && this.options.workload !== 'fill') {
        this.log(`${p.cfg.id} is new to the agent: initial copy of ${p.cfg.diskBytes} bytes`);
        p.initialCopy = makeWorkload('fill', p.cfg.diskBytes, Math.max(this.options.ioBytes, 1024 * 1024), p.sector, p.random);
      } else if (p.model.lastSeq > 0) {
        p.resyncWanted = true;
      }
    }
  }

  /** Whether a resync of the pair is being streamed, or sent and not yet durable. */
  private resyncUnderWay(p: PairState, durableSeq: number): boolean {
    if (p.initialCopy !== null || p.resyncWanted) return true;
    for (let seq = Math.max(durableSeq + 1, p.model.firstSeq); seq <= p.model.lastSeq; seq++) {
      const kind = p.model.item(seq).kind;
      if (kind === 'resync-start' || kind === 'resync-end') return true;
    }
    return false;
  }

  private resendFrom(p: PairState): void {
    const batch: WriteRecordInput[] = [];
    let bytes = 0;
    let image: Buffer | undefined;
    for (let seq = p.sentSeq + 1; seq <= p.model.lastSeq; seq++) {
      const it = p.model.item(seq);
      if (it.kind === 'write') {
        if (it.fromImage) image ??= p.model.imageAt(p.model.lastSeq);
        batch.push({ stream: p.stream as number, seq, offset: it.offset, time: it.time, data: p.model.dataFor(it, image), resync: it.resync });
        bytes += it.length;
        if (bytes >= this.options.messageBytes) {
          this.flushRecords(batch);
          bytes = 0;
        }
      } else {
        this.flushRecords(batch);
        bytes = 0;
        this.sendControl(p, it);
      }
      this.noteSent(p, seq, it.kind === 'write' ? it.length : 0);
    }
    this.flushRecords(batch);
  }

  private flushRecords(batch: WriteRecordInput[]): void {
    if (batch.length === 0) return;
    this.client?.sendRecords(batch);
    batch.length = 0;
  }

  private sendControl(p: PairState, it: ModelItem): void {
    if (it.kind === 'write') return;
    const base = { stream: p.stream, seq: it.seq, time: it.time };
    if (it.kind === 'tag') this.client?.sendJson({ type: 'tag', ...base, kind: it.tagKind, name: it.name, ...(it.group ? { group: it.group } : {}) });
    else this.client?.sendJson({ type: it.kind, ...base });
  }

  private noteSent(p: PairState, seq: number, bytes: number): void {
    p.sentSeq = seq;
    p.unacked.push({ seq, bytes, sentAt: performance.now() });
    p.unackedBytes += bytes;
    p.lastItemAt = Date.now();
  }

  private noteAcked(p: PairState, durableSeq: number): void {
    if (durableSeq <= p.ackedSeq) return;
    const now = performance.now();
    while (p.unacked.length > 0 && (p.unacked[0] as { seq: number }).seq <= durableSeq) {
      const u = p.unacked.shift() as { seq: number; bytes: number; sentAt: number };
      p.unackedBytes -= u.bytes;
      p.bytesAcked += u.bytes;
      if (this.latencies.length < 200_000) this.latencies.push(now - u.sentAt);
      if (u.sentAt >= this.steadyFrom && this.steadyLatencies.length < 200_000) this.steadyLatencies.push(now - u.sentAt);
    }
    p.ackedSeq = durableSeq;
    this.options.onAck?.(p.cfg.id, durableSeq);
  }

  private onAck(stream: number, durableSeq: number): void {
    for (const p of this.pairs.values()) if (p.stream === stream) this.noteAcked(p, durableSeq);
    this.progress?.();
  }

  private onStreamError(e: ErrorMessage): void {
    this.streamErrors[e.code] = (this.streamErrors[e.code] ?? 0) + 1;
    if (e.stream === undefined || e.code === 'target-unavailable') {
      this.log(`agent says ${e.code}: ${e.message}`);
      return;
    }
    for (const p of this.pairs.values()) {
      if (p.stream !== e.stream) continue;
      if (PAIR_ENDING.has(e.code)) {
        this.endPair(p, e.code, e.message);
        continue;
      }
      this.log(`stream of ${p.cfg.id} ended: ${e.code}: ${e.message}; reopening`);
      p.stream = null;
      p.reopen = true;
      p.reopenAfter = Date.now() + (e.code === 'retention-full' ? 1000 : 50);
    }
    this.progress?.();
  }

  // ---- producing ----------------------------------------------------------

  /** The next item of a whole-disk copy: resync-start first, the disk's writes, then resync-end (and `ended`). */
  private copyItem(p: PairState, copy: Workload, seq: number, time: number, ended: () => void): ModelItem {
    if (p.model.lastSeq === 0) return { seq, time, kind: 'resync-start' };
    const w = copy.next();
    if (w === null) {
      ended();
      return { seq, time, kind: 'resync-end' };
    }
    return { seq, time, kind: 'write', offset: w.offset, length: w.length, resync: true, fromImage: false };
  }

  private nextItem(p: PairState, now: number): ModelItem | null {
    const seq = p.model.lastSeq + 1;
    const time = Math.max(now * 1000, p.model.lastSeq >= p.model.firstSeq ? p.model.item(p.model.lastSeq).time : 0);
    if (p.initialCopy !== null) {
      const copy = p.initialCopy;
      return this.copyItem(p, copy, seq, time, () => {
        p.initialCopy = null;
        p.copyEndedMs = Date.now() - this.startedAt;
      });
    }
    if (this.options.workload === 'fill') return this.copyItem(p, p.workload, seq, time, () => (p.done = true));
    if (p.pendingTag !== null) {
      const n = p.pendingTag;
      p.pendingTag = null;
      p.tagCount++;
      return { seq, time, kind: 'tag', tagKind: 'app', name: `vss-${p.cfg.id}-${n}`, group: this.options.group ? `${this.options.group}-${n}` : null };
    }
    const w = p.workload.next();
    if (w === null) return null;
    const every = this.options.tagEvery * Math.max(1, this.pairs.size);
    if (this.options.tagEvery > 0 && ++this.generated % every === 0) {
      // Every pair takes a tag of this round next: the same moment on every disk.
      const n = ++this.tagRounds;
      for (const q of this.pairs.values()) q.pendingTag = n;
    }
    return { seq, time, kind: 'write', offset: w.offset, length: w.length, resync: false, fromImage: false };
  }

  private finished(p: PairState, deadline: number | null): boolean {
    if (this.stopped || p.done) return true;
    // The duration is the change workload's, counted once the pair's initial copy ends: a copy cut
    // short would leave the pair unprotected, and one that ran long would leave it no changes (no tags).
    if (deadline !== null && Date.now() >= deadline + p.copyEndedMs && p.initialCopy === null) return true;
    if (this.options.items !== null && p.model.lastSeq >= this.options.items) return true;
    return false;
  }

  /** Streams until the duration or item count is reached; resumes after disconnects. */
  async run(): Promise<SimulateReport> {
    this.startedAt = Date.now();
    this.steadyFrom = performance.now() + (this.options.latencyWarmupSeconds ?? 1) * 1000;
    const deadline = this.options.durationSeconds === null ? null : this.startedAt + this.options.durationSeconds * 1000;
    let backoff = 100;
    for (;;) {
      try {
        if (this.client === null || this.client.closed) {
          await this.connectAndOpen();
          backoff = 100;
        }
        await this.produce(deadline);
        await this.waitAllAcked(deadline === null ? 60_000 : Math.max(10_000, deadline - Date.now() + 10_000));
        break;
      } catch (err) {
        // A refusal (bad proof, unknown pair, size mismatch, failed over…) is an answer, not a lost connection.
        const final = err instanceof AgentRefusal || (err instanceof MtagentError && err.code === 'model-behind') || !this.options.reconnect || this.stopped;
        if (final) {
          // An open connection would keep the process alive after the error is told.
          this.client?.terminate();
          this.client = null;
          throw err;
        }
        this.reconnects++;
        this.log(`connection lost (${err instanceof Error ? err.message : String(err)}); reconnecting in ${backoff} ms`);
        this.client?.terminate();
        this.client = null;
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(2000, backoff * 2);
      }
    }
    for (const p of this.pairs.values()) {
      if (p.stream !== null && this.client && !this.client.closed) {
        try {
          this.noteAcked(p, await this.client.closeStream(p.stream));
        } catch {
          // The stream may have ended meanwhile; what was acked is already counted.
        }
      }
    }
    await this.client?.close();
    return this.report();
  }

  /** Where the run is, cheaply (for a progress line): acknowledged so far, and sent but not yet acknowledged. */
  snapshot(): { seconds: number; itemsAcked: number; bytesAcked: number; unackedBytes: number; copying: string[] } {
    let itemsAcked = 0;
    let bytesAcked = 0;
    let unackedBytes = 0;
    const copying: string[] = [];
    for (const p of this.pairs.values()) {
      itemsAcked += Math.max(0, p.ackedSeq - p.model.firstSeq + 1);
      bytesAcked += p.bytesAcked;
      unackedBytes += p.unackedBytes;
      if (p.initialCopy !== null) copying.push(p.cfg.id);
    }
    return { seconds: this.startedAt === 0 ? 0 : (Date.now() - this.startedAt) / 1000, itemsAcked, bytesAcked, unackedBytes, copying };
  }

  report(): SimulateReport {
    const summary = (xs: readonly number[]): LatencySummary => {
      const sorted = [...xs].sort((a, b) => a - b);
      return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), samples: sorted.length };
    };
    const pairs = [...this.pairs.values()].map((p) => ({ pair: p.cfg.id, sentSeq: p.sentSeq, ackedSeq: p.ackedSeq, bytesAcked: p.bytesAcked, endedBy: p.endedBy }));
    return {
      seconds: (Date.now() - this.startedAt) / 1000,
      itemsAcked: pairs.reduce((n, p) => n + p.ackedSeq, 0),
      bytesAcked: pairs.reduce((n, p) => n + p.bytesAcked, 0),
      reconnects: this.reconnects,
      streamErrors: { ...this.streamErrors },
      ackLatencyMs: summary(this.latencies),
      steadyAckLatencyMs: summary(this.steadyLatencies),
      pairs,
    };
  }

  private async waitProgress(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.progress = done;
    });
    this.progress = null;
  }

  private checkConnection(): void {
    if (this.client === null || this.client.closed) throw new MtagentError('connection-closed', `connection closed (${this.client?.closeCode ?? '?'})`);
  }

  private async produce(deadline: number | null): Promise<void> {
    const window = Math.max(1, this.client?.windowBytes ?? 64 * 1024 * 1024);
    const perPairWindow = Math.max(this.options.ioBytes * 2, Math.floor(window / Math.max(1, this.pairs.size)));
    // At a set rate the writes go out as they come due, a message at most at
    // once: a larger bucket sends bursts whose last items wait behind the rest.
    const burstBytes = Math.max(this.options.ioBytes, this.options.messageBytes);
    let tokens = 0;
    let lastRefill = performance.now();
    const pending: WriteRecordInput[] = [];
    for (;;) {
      this.checkConnection();
      let active = 0;
      let sentSomething = false;
      let tokenWaitMs: number | null = null;
      const order = [...this.pairs.values()];
      this.turn = (this.turn + 1) % Math.max(1, order.length);
      for (const p of [...order.slice(this.turn), ...order.slice(0, this.turn)]) {
        if (p.reopen) {
          if (Date.now() >= p.reopenAfter) await this.openPair(p);
          active++;
          continue;
        }
        if (p.stream === null) continue;
        if (p.resyncWanted) {
          p.resyncWanted = false;
          this.resyncReports.push(await this.deltaResync(p.cfg.id));
        }
        if (this.finished(p, deadline)) continue;
        active++;
        let bytes = 0;
        while (!this.finished(p, deadline) && p.unackedBytes < perPairWindow && bytes < this.options.messageBytes) {
          // An initial copy goes at the speed of the wire, as a process server's does; the rate is the workload's.
          const copying = p.initialCopy !== null;
          if (this.options.rateBytesPerSecond !== null && !copying) {
            const now = performance.now();
            tokens = Math.min(burstBytes, tokens + ((now - lastRefill) / 1000) * this.options.rateBytesPerSecond);
            lastRefill = now;
            if (tokens < this.options.ioBytes) {
              tokenWaitMs = ((this.options.ioBytes - tokens) / this.options.rateBytesPerSecond) * 1000;
              break;
            }
          }
          const item = this.nextItem(p, Date.now());
          if (item === null) break;
          p.model.add(item);
          if (item.kind === 'write') {
            pending.push({ stream: p.stream, seq: item.seq, offset: item.offset, time: item.time, data: p.model.dataFor(item), resync: item.resync });
            bytes += item.length;
            if (!copying) tokens -= item.length;
          } else {
            this.flushRecords(pending);
            this.sendControl(p, item);
          }
          this.noteSent(p, item.seq, item.kind === 'write' ? item.length : 0);
          sentSomething = true;
        }
        this.flushRecords(pending);
        // Ticks keep RPO measurable while a disk is idle.
        if (!this.finished(p, deadline) && Date.now() - p.lastItemAt >= this.options.tickSeconds * 1000 && p.unackedBytes < perPairWindow) {
          const seq = p.model.lastSeq + 1;
          const tick: ModelItem = { seq, time: Math.max(Date.now() * 1000, p.model.lastSeq >= p.model.firstSeq ? p.model.item(p.model.lastSeq).time : 0), kind: 'tick' };
          p.model.add(tick);
          this.sendControl(p, tick);
          this.noteSent(p, seq, 0);
          sentSomething = true;
        }
      }
      if (active === 0) return;
      // Do not let the socket buffer run away from the agent: wait for acks or drain.
      if ((this.client?.bufferedAmount ?? 0) > 8 * 1024 * 1024) await this.waitProgress(5);
      else if (sentSomething) await new Promise((r) => setImmediate(r));
      else if (tokenWaitMs !== null) await new Promise((r) => setTimeout(r, Math.max(1, tokenWaitMs)));
      else await this.waitProgress(20);
    }
  }

  private async waitAllAcked(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      this.checkConnection();
      let waiting = false;
      for (const p of this.pairs.values()) {
        if (p.reopen && Date.now() >= p.reopenAfter) await this.openPair(p);
        if (p.ackedSeq < p.model.lastSeq && p.endedBy === null) waiting = true;
      }
      if (!waiting) return;
      if (Date.now() > until) throw new MtagentError('timeout', 'not every item was acknowledged in time');
      await this.waitProgress(50);
    }
  }

  // ---- delta resync ---------------------------------------------------------

  /**
   * Asks the agent for block checksums of the whole target, compares them
   * with the source, and sends only the blocks that differ, between
   * resync-start and resync-end.
   */
  async deltaResync(pairId: string, blockBytes = 64 * 1024): Promise<ResyncReport> {
    const p = this.pairs.get(pairId);
    if (!p || p.stream === null || !this.client) throw new MtagentError('not-open', `pair ${pairId} is not open`);
    await this.waitAllAcked(120_000);
    const client = this.client;
    const stream = p.stream;
    const now = (): number => Math.max(Date.now() * 1000, p.model.lastSeq >= p.model.firstSeq ? p.model.item(p.model.lastSeq).time : 0);
    // The source as it is now: writes copied from it later do not change it.
    const sourceSeq = p.model.lastSeq;
    const start: ModelItem = { seq: p.model.lastSeq + 1, time: now(), kind: 'resync-start' };
    p.model.add(start);
    this.sendControl(p, start);
    this.noteSent(p, start.seq, 0);
    // Spans of 1024 blocks, four asked at a time: the agent sums the next
    // ones while this side builds its own, compares, and sends what differs.
    const span = blockBytes * 1024;
    const depth = 4;
    let differing = 0;
    let id = Date.now() % 1_000_000;
    let checksumBytes = 0;
    const asked: Array<Promise<ChecksumsResponse>> = [];
    const spans = Math.ceil(p.cfg.diskBytes / span);
    const ask = (upTo: number): void => {
      while (asked.length < Math.min(spans, upTo)) {
        const off = asked.length * span;
        const r = client.checksums(stream, id++, off, Math.min(span, p.cfg.diskBytes - off), blockBytes);
        r.catch(() => undefined); // awaited in turn below
        asked.push(r);
      }
    };
    let bytesSent = 0;
    const batch: WriteRecordInput[] = [];
    let batchBytes = 0;
    // One buffer for every span (memory new to the process costs a page fault per 4 KiB): what is sent from it is encoded before the next span.
    const spanBuffer = Buffer.allocUnsafe(Math.min(span, p.cfg.diskBytes));
    for (let n = 0; n < spans; n++) {
      ask(n + depth);
      const off = n * span;
      const source = p.model.imageRange(sourceSeq, off, Math.min(span, p.cfg.diskBytes - off), spanBuffer);
      const r = await (asked[n] as Promise<ChecksumsResponse>);
      checksumBytes += JSON.stringify(r).length;
      for (const [i, h] of r.sha256.entries()) {
        const data = source.subarray(i * blockBytes, Math.min(source.length, (i + 1) * blockBytes));
        if (createHash('sha256').update(data).digest('hex') === h) continue;
        differing++;
        const it: ModelItem = { seq: p.model.lastSeq + 1, time: now(), kind: 'write', offset: off + i * blockBytes, length: data.length, resync: true, fromImage: true };
        p.model.add(it);
        batch.push({ stream, seq: it.seq, offset: it.offset, time: it.time, data, resync: true });
        this.noteSent(p, it.seq, data.length);
        bytesSent += data.length;
        batchBytes += data.length;
        if (batchBytes >= this.options.messageBytes) {
          this.flushRecords(batch);
          batchBytes = 0;
          while (p.unackedBytes > 32 * 1024 * 1024) await this.waitProgress(20);
        }
      }
      this.flushRecords(batch);
      batchBytes = 0;
    }
    const end: ModelItem = { seq: p.model.lastSeq + 1, time: now(), kind: 'resync-end' };
    p.model.add(end);
    this.sendControl(p, end);
    this.noteSent(p, end.seq, 0);
    await this.waitAllAcked(120_000);
    const report = { pair: pairId, blocks: Math.ceil(p.cfg.diskBytes / blockBytes), differing, bytesSent, diskBytes: p.cfg.diskBytes, checksumBytes };
    this.log(`delta resync of ${pairId}: ${differing} of ${report.blocks} blocks differed; sent ${bytesSent} of ${p.cfg.diskBytes} bytes`);
    return report;
  }
}
