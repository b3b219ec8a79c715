// The ingest path: a process server opens a pair, its items are checked and
// accepted in order, then made durable in the ingest log (group commit) and
// handed to the applier. An active pair too far behind on its target waits
// here before more is journaled (back-pressure).
import { fromWrittenBatch } from '../apply/applier';
import { MtagentError } from '../errors';
import type { IngestBatch } from '../journal/ingest-log';
import { itemRecord, type ItemRecord, type StreamItem } from '../journal/items';
import { RecordKind } from '../journal/record';
import type { EngineCore } from './core';
import { EngineError } from './errors';
import { checkItem } from './item-check';
import type { PairRuntime } from './pairs';

/** A failed-over pair, or one being failed over, takes no opens and no items until it is committed. */
function assertNotFailedOver(pair: PairRuntime, seq: number | null = null): void {
  if (!pair.state.refusesItems) return;
  throw new EngineError('failed-over', `pair ${pair.pairId} is failed over; commit it (mtagent commit ${pair.pairId}) before replicating again`, pair.pairId, seq);
}

export interface Accepted {
  /** The items taken, in order: every one before the refused one. */
  items: StreamItem[];
  /** The first item refused, and why; null when all were taken. */
  refusal: EngineError | null;
}

export class IngestPath {
  private readonly lagWaiters = new Map<string, Array<() => void>>();

  constructor(private readonly core: EngineCore) {}

  /**
   * A process server opens a pair: checks it, makes everything accepted for
   * it durable, and tells where to continue.
   */
  async openPair(pairId: string, diskBytes: number, sectorBytes: number): Promise<{ durableSeq: number; needsResync: boolean; session: number }> {
    this.core.assertUsable();
    const pair = this.core.pairs.requireConfigured(pairId);
    assertNotFailedOver(pair);
    if (sectorBytes !== 512 && sectorBytes !== 4096) throw new EngineError('bad-request', `sectorBytes must be 512 or 4096, not ${sectorBytes}`, pairId);
    if (!Number.isSafeInteger(diskBytes) || diskBytes <= 0 || diskBytes % sectorBytes !== 0) {
      throw new EngineError('bad-request', `diskBytes must be a positive multiple of sectorBytes, not ${diskBytes}`, pairId);
    }
    const known = pair.target?.sizeBytes ?? pair.diskBytes ?? (pair.config.sizeBytes || null);
    if (known !== null && known !== diskBytes) {
      throw new EngineError('size-mismatch', `pair ${pairId}: the source disk is ${diskBytes} bytes but the target is ${known}`, pairId);
    }
    // From here the previous session's appends are refused; what it already handed over becomes durable.
    const session = ++pair.session;
    await this.core.ingest.drain();
    if (session !== pair.session) throw new EngineError('superseded', `pair ${pairId} was opened again meanwhile`, pairId);
    pair.diskBytes = diskBytes;
    pair.sectorBytes = sectorBytes;
    pair.opened = true;
    pair.lastSeq = pair.durableSeq;
    pair.lastTime = pair.durableTime ?? 0;
    this.core.catalog.updatePair(pairId, { diskBytes, sectorBytes, durableSeq: pair.durableSeq });
    return { durableSeq: pair.durableSeq, needsResync: pair.needsResync, session };
  }

  /**
   * Checks items of one pair, in order, and accepts those before the first
   * that fails (the check of item-check.ts): synchronous, so a refusal is
   * known as the items arrive. Throws what refuses the whole call (an
   * unknown or unopened pair, one failed over, a superseded session).
   */
  accept(pairId: string, items: readonly StreamItem[], session?: number): Accepted {
    this.core.assertUsable();
    const pair = this.core.pairs.requireConfigured(pairId);
    assertNotFailedOver(pair, items[0]?.seq ?? null);
    if (!pair.opened || pair.diskBytes === null || pair.sectorBytes === null) throw new EngineError('not-open', `pair ${pairId} was not opened`, pairId);
    if (session !== undefined && session !== pair.session) {
      throw new EngineError('superseded', `pair ${pairId} was opened on another connection`, pairId, items[0]?.seq ?? null);
    }
    const accepted: StreamItem[] = [];
    const context = { pairId, lastSeq: pair.lastSeq, sectorBytes: pair.sectorBytes, diskBytes: pair.diskBytes };
    for (const item of items) {
      const refusal = checkItem(context, item);
      if (refusal) return { items: accepted, refusal };
      // A time that goes backwards within a stream counts as the one before it.
      const time = Math.max(item.time, pair.lastTime);
      pair.lastSeq = item.seq;
      pair.lastTime = time;
      context.lastSeq = item.seq;
      accepted.push(time === item.time ? item : { ...item, time });
    }
    return { items: accepted, refusal: null };
  }

  /**
   * Makes accepted items durable; resolves with the pair's durable seq. A
   * pair whose applier is far behind waits first (one paused, failing over
   * or gone does not: it journals on).
   */
  async journal(pairId: string, items: readonly StreamItem[], session?: number): Promise<number> {
    const pair = this.core.pairs.requireConfigured(pairId);
    const waitFrom = performance.now();
    let waited = false;
    while (!pair.state.paused && !pair.state.refusesItems && this.behind(pair) && !this.core.closed) {
      waited = true;
      await new Promise<void>((resolve) => {
        const list = this.lagWaiters.get(pairId) ?? [];
        list.push(resolve);
        this.lagWaiters.set(pairId, list);
      });
    }
    if (waited) this.core.applier.timings.lagWaitSeconds += (performance.now() - waitFrom) / 1000;
    const firstSeq = items[0]?.seq ?? null;
    // A session superseded meanwhile (what it accepted is the new one's to resend), or a failover begun.
    if (session !== undefined && session !== pair.session) throw new EngineError('superseded', `pair ${pairId} was opened on another connection`, pairId, firstSeq);
    assertNotFailedOver(pair, firstSeq);
    if (items.length === 0) return pair.durableSeq;
    try {
      const records: ItemRecord[] = items.map((item) => itemRecord(pairId, item));
      await this.core.ingest.append(records);
    } catch (err) {
      // Nothing of it is durable: the client resends from durableSeq.
      pair.lastSeq = pair.durableSeq;
      pair.lastTime = pair.durableTime ?? 0;
      if (err instanceof MtagentError && err.code === 'retention-full') throw new EngineError('retention-full', err.message, pairId, firstSeq);
      throw err;
    }
    return pair.durableSeq;
  }

  /**
   * Accepts items of one pair and resolves with its durable seq once they are
   * durable. If an item is refused, the items before it are still made
   * durable, then the refusal is thrown (EngineError with its seq).
   */
  async append(pairId: string, items: readonly StreamItem[], session?: number): Promise<number> {
    const { items: accepted, refusal } = this.accept(pairId, items, session);
    const durable = await this.journal(pairId, accepted, session);
    if (refusal) throw refusal;
    return durable;
  }

  /** What a durable record says of its pair (start-up's scan, and every batch written). */
  noteDurable(pair: PairRuntime, kind: RecordKind, seq: number, time: number, writeBytes: number): void {
    if (seq > pair.durableSeq) {
      pair.durableSeq = seq;
      pair.durableTime = time;
    }
    if (kind === RecordKind.ResyncStart) pair.inResync = true;
    else if (kind === RecordKind.ResyncEnd) {
      pair.inResync = false;
      pair.needsResync = false;
    }
    if (kind === RecordKind.Write) {
      if (seq > pair.appliedSeq) pair.lagBytes += writeBytes;
      pair.rate.bytes += writeBytes;
    }
  }

  /** A batch is durable: its pairs move on, and the applier takes it. */
  onDurable(batch: IngestBatch): void {
    this.core.lastBatchAt = Date.now();
    for (const r of batch.records) {
      const pair = this.core.pairs.get(r.fields.pairId);
      if (!pair) continue;
      this.noteDurable(pair, r.fields.kind, r.item.seq, r.item.time, r.item.kind === 'write' ? r.item.data.length : 0);
      if (r.item.kind === 'write' && !r.item.resync) pair.churn.add(r.item.data.length);
      if (r.item.kind === 'resync-start') this.core.log.info({ pair: pair.pairId, seq: r.item.seq }, 'resync started: points from here are refused until it ends');
      else if (r.item.kind === 'resync-end') this.core.log.info({ pair: pair.pairId, seq: r.item.seq }, 'resync ended: the target matches the source again');
    }
    this.core.applier.enqueue(fromWrittenBatch(batch));
  }

  /** Whether the pair is too far behind, alone or with the others, to accept more now. */
  behind(pair: PairRuntime): boolean {
    const { maxApplyLagBytes, maxTotalApplyLagBytes } = this.core.sizes;
    if (pair.lagBytes > maxApplyLagBytes) return true;
    return pair.lagBytes > 0 && this.totalLagBytes() > maxTotalApplyLagBytes;
  }

  /** Durable write bytes not yet applied, over the pairs that apply (a paused one journals on, and does not count). */
  totalLagBytes(): number {
    let total = 0;
    for (const p of this.core.pairs.all()) if (!p.state.paused) total += p.lagBytes;
    return total;
  }

  /** Whether appends of any pair wait for its applier to catch up. */
  get lagWaiting(): boolean {
    return this.lagWaiters.size > 0;
  }

  /** Appends waiting on the pair's lag go on (it caught up, paused, or is failing over). */
  wakeLagWaiters(pairId: string): void {
    const list = this.lagWaiters.get(pairId);
    if (!list) return;
    this.lagWaiters.delete(pairId);
    for (const w of list) w();
  }

  wakeAll(): void {
    for (const id of [...this.lagWaiters.keys()]) this.wakeLagWaiters(id);
  }
}
