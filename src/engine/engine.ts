// The replication engine: everything between a validated stream item and a
// recoverable point, with no network. It owns the retention volume (lock,
// ingest log, undo logs, space), the catalog, the targets and the applier.
import { join } from 'node:path';
import { Applier, batchSlabBytes, extentSlabBytes, fromWrittenBatch, type ApplierPair } from '../apply/applier';
import { SlabCarver, SlabPool } from '../apply/slab-pool';
import type { ApplyResult } from '../apply/pair-applier';
import { TargetDisk, TargetError } from '../apply/target';
import { mkdirDurable } from '../durable-files';
import { MtagentError } from '../errors';
import { IngestLog, comparePositions } from '../journal/ingest-log';
import { isItemRecord, itemRecord, decodeTagPayload, type StreamItem } from '../journal/items';
import { RecordKind, type DecodedRecord } from '../journal/record';
import type { LogBatch, LogPosition, PendingRecord, WrittenBatch } from '../journal/segment-log';
import { UndoLog, pairsWithRetention, type ItemPoint } from '../journal/undo-log';
import { silentLogger, type Logger } from '../log';
import { RetentionLock } from '../retention/lock';
import { measureSpace, minimumRetentionBytes, type SpaceAccount } from '../retention/space';
import { foregroundIo } from '../native';
import { rollBack } from '../recovery/rollback';
import { Catalog } from '../store/catalog';
import { EngineError } from './errors';

export const MAX_WRITE_BYTES = 4 * 1024 * 1024;
export const MAX_TAG_NAME = 128;

export interface EnginePairConfig {
  id: string;
  target: string;
  /** For an image file: created sparse at this size when the pair is new and the file absent. */
  sizeBytes?: number | null;
  group?: string | null;
}

export interface EnginePolicy {
  retentionSeconds: number;
  rpoThresholdSeconds: number;
}

export interface EngineOptions {
  agentId: string;
  configPath?: string | null;
  retentionDir: string;
  dataDir: string;
  pairs: readonly EnginePairConfig[];
  policy: EnginePolicy;
  /** Cap on the retention volume's use; null: its free space less the reserve. */
  maxBytes?: number | null;
  reserveBytes?: number;
  ingestSegmentBytes?: number;
  undoSegmentBytes?: number;
  maxBatchBytes?: number;
  cycleBytes?: number;
  applierMemoryBytes?: number;
  /** Size of the applier's memory slabs; by default a cycle or a batch fits one (tests make it small to reuse memory often). */
  applierSlabBytes?: number;
  /** Fill the applier's memory with garbage when it is given back (tests: a read after release shows). */
  poisonFreedMemory?: boolean;
  targetRetryMs?: number;
  pruneIntervalMs?: number;
  /** How long appends wait for space (back-pressure) before `retention-full`. */
  spaceWaitMs?: number;
  /** An active pair further behind than this (durable but unapplied write bytes) waits before accepting more. */
  maxApplyLagBytes?: number;
  /** Less than a cycle of durable items waits this long (ms) for more before it is applied, while nobody needs it sooner. */
  applyGatherMs?: number;
  logger?: Logger;
  /** Wall clock in µs (tests move it). */
  now?: () => number;
}

export type PairStateName = 'unprotected' | 'resyncing' | 'protected' | 'target-unavailable' | 'failed-over' | 'error';

interface PairRuntime extends ApplierPair {
  config: EnginePairConfig | null;
  diskBytes: number | null;
  sectorBytes: number | null;
  opened: boolean;
  lastSeq: number;
  lastTime: number;
  durableSeq: number;
  durableTime: number | null;
  needsResync: boolean;
  inResync: boolean;
  failover: 'rolling-back' | 'failed-over' | null;
  failoverSeq: number | null;
  /** A failover has begun: appends are refused, so what it drains and waits for stops growing. */
  failingOver: boolean;
  lastError: string | null;
  /** A problem that stays reported until an operator acts (acknowledged items missing). */
  alert: string | null;
  /** The oldest state the undo log can roll back to. */
  oldest: ItemPoint;
  pins: number;
  ingestBytes: number;
  /** Bumped by every openPair: an older session's appends are refused as superseded. */
  session: number;
  /** Durable write bytes not yet applied. */
  lagBytes: number;
  rate: { since: number; bytes: number; perSecond: number };
  /**
   * Tags and resync markers applied but not yet in the catalog: its last
   * write failed (a full dataDir). Kept until a write takes them, so points
   * are not refused for want of them while the daemon runs.
   */
  unrecordedMarkers: StreamItem[];
}

/** A pair failed over, or being failed over, takes no opens and no items until it is committed. */
function assertNotFailedOver(pair: PairRuntime, seq: number | null = null): void {
  if (pair.failover === null && !pair.failingOver) return;
  throw new EngineError('failed-over', `pair ${pair.pairId} is failed over; commit it (mtagent commit ${pair.pairId}) before replicating again`, pair.pairId, seq);
}

export interface PairStatus {
  pair: string;
  group: string | null;
  state: PairStateName;
  configured: boolean;
  target: string | null;
  diskBytes: number | null;
  durableSeq: number;
  appliedSeq: number;
  oldestSeq: number;
  oldestTime: number | null;
  latestTime: number | null;
  rpoSeconds: number | null;
  rpoHealth: 'ok' | 'warning' | 'critical' | null;
  journalBytes: number;
  ingestBytesPerSecond: number;
  /** Write bytes durable in the ingest log and not yet on the target; ingest waits while it is above maxApplyLagBytes. */
  applyLagBytes: number;
  needsResync: boolean;
  lastError: string | null;
}

/** What the recovery code needs of a pair; the engine keeps it consistent while pinned. */
export interface PairHistory {
  pairId: string;
  diskBytes: number;
  target: TargetDisk | null;
  /** The state the target holds: the applied seq, or the failover point. */
  targetSeq: number;
  /**
   * Where rolling back a copy of the target starts. While the pair is
   * applied, a step's writes land before its seq counts as applied, so a copy
   * may hold writes past targetSeq: every item whose before-image is durable
   * is rolled back. Undoing one whose writes have not landed is harmless: its
   * before-image is what the target would hold, and older ones come after it.
   */
  rollbackFromSeq: number;
  oldest: ItemPoint;
  undo: UndoLog;
  /** The newest durable item: past targetSeq while the applier has not caught up. */
  durableSeq: number;
  /** Why applying stopped (the target failed, the volume is full), until it has caught up again; null while it goes on. */
  applyPausedBy: string | null;
}

const DEFAULTS = {
  reserveBytes: 256 * 1024 * 1024,
  ingestSegmentBytes: 64 * 1024 * 1024,
  undoSegmentBytes: 64 * 1024 * 1024,
  maxBatchBytes: 8 * 1024 * 1024,
  // Sized for peak RSS: 8 and 32 MiB held 35-45 MiB more at full load for
  // no more throughput (docs/design-notes.md, "What the daemon holds at full load").
  cycleBytes: 4 * 1024 * 1024,
  applierMemoryBytes: 8 * 1024 * 1024,
  targetRetryMs: 2000,
  pruneIntervalMs: 10_000,
  spaceWaitMs: 30_000,
  maxApplyLagBytes: 1024 * 1024 * 1024,
  applyGatherMs: 50,
};

/** Idle applier slabs but the last one given back keep their pages this long (ms), then give them back. */
const IDLE_SLAB_DISCARD_MS = 100;

/** How often the ingest rate in status is measured. */
const RATE_WINDOW_MS = 5000;

/** The least retention `pairCount` pairs need with these options' segment sizes (minimumRetentionBytes). */
function retentionNeeded(options: EngineOptions, pairCount: number): { bytes: number; ingest: number; undo: number } {
  const ingest = options.ingestSegmentBytes ?? DEFAULTS.ingestSegmentBytes;
  const undo = options.undoSegmentBytes ?? DEFAULTS.undoSegmentBytes;
  return { bytes: minimumRetentionBytes(pairCount, ingest, undo), ingest, undo };
}

/** A configured retention.maxBytes must hold the least the pairs need. */
function assertRetentionFits(maxBytes: number | null, pairCount: number, options: EngineOptions): void {
  if (maxBytes === null) return;
  const { bytes: needed, ingest, undo } = retentionNeeded(options, pairCount);
  if (maxBytes < needed) {
    throw new MtagentError(
      'ERR_RETENTION_TOO_SMALL',
      `retention.maxBytes ${maxBytes} is below the ${needed} bytes ${pairCount} pair(s) need (two ingest segments of ${ingest} bytes, and two undo segments of ${undo} bytes per pair): raise it, or set it to null to use the volume's free space`,
    );
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class Engine {
  readonly options: EngineOptions;
  readonly log: Logger;
  readonly catalog: Catalog;
  private readonly lock: RetentionLock;
  private readonly pairs = new Map<string, PairRuntime>();
  private ingest!: IngestLog;
  private applier!: Applier;
  private timers: NodeJS.Timeout[] = [];
  private closed = false;
  private fatal: unknown = null;
  private reportFatal: (err: unknown) => void = () => undefined;
  /** Settles with the error the first time the engine stops on one it cannot pass (the applier's); never otherwise. */
  readonly stoppedOnError: Promise<unknown> = new Promise((resolve) => (this.reportFatal = resolve));
  private readonly appliedWaiters = new Set<{ pairId: string; seq: number; resolve: () => void }>();
  private readonly now: () => number;
  private readonly lagWaiters = new Map<string, Array<() => void>>();
  /** The last space measurement (refreshed on allocation and by the prune timer). */
  private lastSpace: SpaceAccount | null = null;
  /** Appends waiting for the applier to free ingest segments: the applier must not yield then. */
  private waitingForRoom = 0;
  /** The ingest log's last wait for room ran out: later appends do not wait again until room is found. */
  private volumeFull = false;
  /** Write payload bytes applied, and before-image bytes captured, since open (write amplification). */
  bytesApplied = 0;
  undoBytesWritten = 0;

  private constructor(options: EngineOptions, lock: RetentionLock, catalog: Catalog) {
    this.options = options;
    this.log = options.logger ?? silentLogger();
    this.lock = lock;
    this.catalog = catalog;
    this.now = options.now ?? (() => Date.now() * 1000);
  }

  private opt<K extends keyof typeof DEFAULTS>(key: K): number {
    return (this.options[key] as number | undefined) ?? DEFAULTS[key];
  }

  /** Opens the retention volume, recovers after any crash, and starts applying. */
  static async open(options: EngineOptions): Promise<Engine> {
    const cycle = options.cycleBytes ?? DEFAULTS.cycleBytes;
    const undoSeg = options.undoSegmentBytes ?? DEFAULTS.undoSegmentBytes;
    if (undoSeg < 2 * cycle + 64 * 1024) {
      throw new MtagentError('ERR_BAD_OPTIONS', `undoSegmentBytes (${undoSeg}) must be at least twice cycleBytes (${cycle}) plus 64 KiB, so an apply step's undo batch fits a segment`);
    }
    assertRetentionFits(options.maxBytes ?? null, options.pairs.length, options);
    mkdirDurable(join(options.retentionDir, 'ingest'));
    mkdirDurable(join(options.retentionDir, 'pairs'));
    const lock = await RetentionLock.acquire(options.retentionDir, { agentId: options.agentId, configPath: options.configPath ?? null });
    let catalog: Catalog | null = null;
    try {
      catalog = Catalog.open(join(options.dataDir, 'catalog.db'));
      const engine = new Engine(options, lock, catalog);
      await engine.recover();
      return engine;
    } catch (err) {
      catalog?.close();
      await lock.release();
      throw err;
    }
  }

  // ---- start-up and recovery -------------------------------------------

  private async recover(): Promise<void> {
    const configured = new Map(this.options.pairs.map((p) => [p.id, p]));
    // Pairs with retention on the volume count too (a catalog lost or replaced): their history is not ignored.
    const known = new Set([...configured.keys(), ...this.catalog.pairs().map((p) => p.pairId), ...pairsWithRetention(this.options.retentionDir)]);
    for (const pairId of known) await this.openPairHistory(pairId, configured.get(pairId) ?? null);

    const purged = this.catalog.purgedPairs();
    // The ingest log's tail: what is durable but not yet applied.
    const firstUnapplied = new Map<string, { position: LogPosition; seq: number }>();
    // Each ingest batch is encoded in memory carved from these slabs, which
    // goes on to the applier with the durable batch; the applier reads
    // batches back from the log into the same pool. When the applier's queue
    // overflows, all it held is idle at once: kept, it is what the next
    // batches take instead of new memory (peak use is the same).
    const batchSlab = this.options.applierSlabBytes ?? batchSlabBytes(this.opt('maxBatchBytes'));
    const poison = this.options.poisonFreedMemory ?? false;
    const batchMemory = new SlabPool(batchSlab, Math.ceil(this.opt('applierMemoryBytes') / batchSlab) + 2, poison, 1, IDLE_SLAB_DISCARD_MS);
    // Two cycles hold extents at once (stage A and stage B), and both come
    // back when the applier goes idle: kept, the next burst reuses both
    // instead of mapping a new slab and dropping one every time. The second
    // gives its pages back meanwhile, so an idle applier holds one slab's RSS.
    const extentSlab = this.options.applierSlabBytes ?? extentSlabBytes(this.opt('cycleBytes'), this.opt('maxBatchBytes'));
    const extentMemory = new SlabPool(extentSlab, 2, poison, 1, IDLE_SLAB_DISCARD_MS);
    const staging = new SlabCarver(batchMemory);
    const { log, scan } = await IngestLog.open(
      {
        dir: join(this.options.retentionDir, 'ingest'),
        segmentBytes: this.opt('ingestSegmentBytes'),
        maxBatchBytes: this.opt('maxBatchBytes'),
        beforeAllocate: (bytes) => this.makeRoom(bytes, true),
        onBatch: (batch) => this.onDurable(batch),
        onFailed: (err) => this.onFatal(err, 'the ingest log failed: nothing more can be made durable'),
        onIdle: () => this.applier?.poke(),
        stagingSource: staging,
      },
      (batch) => {
        for (const r of batch.records) {
          if (!isItemRecord(r)) continue;
          const pair = this.pairs.get(r.pairId);
          // Items of a purged pair: nothing of it is kept, and they are applied to nothing,
          // not even to a pair added again under the same id.
          const purgedAt = purged.get(r.pairId);
          if (pair === undefined || (purgedAt !== undefined && comparePositions(batch, purgedAt) < 0)) continue;
          const catalogApplied = this.catalog.pair(r.pairId)?.appliedSeq ?? 0;
          if (r.seq > catalogApplied && !firstUnapplied.has(r.pairId)) {
            firstUnapplied.set(r.pairId, { position: { segment: batch.segment, fileOffset: batch.fileOffset }, seq: r.seq });
          }
          this.noteDurable(pair, r.kind, r.seq, r.time, r.kind === RecordKind.Write ? r.payloadLength : 0);
        }
      },
    );
    this.ingest = log;
    if (scan.tornTail) this.log.warn({ tornTail: scan.tornTail }, 'ingest log ended in a torn batch (never acknowledged); continuing before it');
    if (log.sparedAtOpen.length > 0) this.log.warn({ segments: log.sparedAtOpen }, 'ingest segments past the end held nothing whole (made or torn just before a crash): kept as spares');

    for (const pair of this.pairs.values()) {
      const remembered = this.catalog.pair(pair.pairId)?.durableSeq ?? 0;
      if (remembered > pair.durableSeq) {
        pair.alert = `acknowledged items missing: the catalog recorded seq ${remembered} as durable, the logs end at seq ${pair.durableSeq}; the retention volume lost data (run mtagent verify ${pair.pairId})`;
        this.catalog.addEvent(pair.pairId, 'acknowledged-items-missing', pair.alert);
        this.log.error({ pair: pair.pairId, catalogDurableSeq: remembered, logDurableSeq: pair.durableSeq }, 'acknowledged items missing from the logs');
      }
      const first = firstUnapplied.get(pair.pairId);
      // A failed-over pair applies nothing more, and its commit drops its history: not checked.
      if (first && pair.failover === null) this.flagLostItems(pair, first.seq);
      // Everything before the first unapplied item in the log was applied: it is either
      // at or below the catalog's checkpoint, or its segment was recycled, which
      // happens only after it was applied.
      pair.appliedSeq = first ? first.seq - 1 : pair.durableSeq;
      pair.lastSeq = pair.durableSeq;
      pair.lastTime = pair.durableTime ?? 0;
      pair.appliedPoint = this.pointAtOrBefore(pair, pair.appliedSeq);
      if (pair.config && pair.failover === null) await this.attachTarget(pair);
    }
    // The applier starts at the earliest item an active pair still needs; a
    // paused pair keeps its own place and catches up when it resumes.
    let cursor: LogPosition = scan.end;
    for (const pair of this.pairs.values()) {
      const first = firstUnapplied.get(pair.pairId);
      if (!first) continue;
      if (pair.paused) pair.resumeFrom = first.position;
      else if (comparePositions(first.position, cursor) < 0) cursor = first.position;
    }
    this.applier = new Applier(
      {
        ingest: this.ingest,
        pairs: this.pairs as Map<string, ApplierPair>,
        cycleBytes: this.opt('cycleBytes'),
        maxStepBytes: Math.floor(this.opt('undoSegmentBytes') / 2) - 64 * 1024,
        memoryBudgetBytes: this.opt('applierMemoryBytes'),
        extentMemory,
        batchMemory,
        staging,
        onApplied: (p, r) => this.onApplied(p as PairRuntime, r),
        onPaused: (p, err) => this.onPaused(p as PairRuntime, err),
        onResumed: (p) => this.onResumed(p as PairRuntime),
        onError: (err) => this.onFatal(err),
        shouldYield: () => this.applierShouldYield(),
        gatherMs: this.opt('applyGatherMs'),
        mayGather: () => this.acksComeFirst(),
      },
      cursor,
      scan.end,
    );
    // A failover interrupted by a crash is finished before anything else.
    for (const pair of this.pairs.values()) {
      if (pair.failover === 'rolling-back' && pair.failoverSeq !== null) {
        this.log.warn({ pair: pair.pairId, seq: pair.failoverSeq }, 'finishing a failover interrupted by a restart');
        await this.attachTarget(pair, true);
        await this.rollTargetBack(pair, pair.failoverSeq);
      }
    }
    const space = await this.space();
    const needed = retentionNeeded(this.options, this.options.pairs.length).bytes;
    if (space.capacityBytes < needed) {
      this.log.error(
        { capacityBytes: space.capacityBytes, neededBytes: needed, pairs: this.options.pairs.length },
        'the retention volume is too small for these pairs: once it fills, pairs stop applying; give it more space',
      );
    }
    foregroundIo.giveWayWhen = this.giveWay;
    this.applier.poke();
    this.timers.push(setInterval(() => this.retryPausedPairs(), this.opt('targetRetryMs')).unref());
    this.timers.push(setInterval(() => this.rollRates(), RATE_WINDOW_MS).unref());
    this.timers.push(setInterval(() => void this.space().catch(() => undefined), 2000).unref());
    this.timers.push(setInterval(() => void this.pruneByTime().catch((err: unknown) => this.log.error({ err }, 'pruning failed')), this.opt('pruneIntervalMs')).unref());
    this.log.info(
      { pairs: [...this.pairs.keys()], ingestEnd: scan.end, batchesScanned: scan.batches },
      'engine recovered',
    );
  }

  /**
   * A pair's first item still in the ingest log must follow what was applied.
   * Items in between were acknowledged, yet are neither applied (the undo log,
   * written before any target write, has no record of them) nor in the log: a
   * segment was lost (deleted by hand, or by the volume). The target will lack
   * them, so the pair is flagged, its points from the gap on are refused (a
   * resync window, closed by the next resync-end), and the next open asks the
   * process server for a resync, which rewrites every block that differs.
   */
  private flagLostItems(pair: PairRuntime, firstInLog: number): void {
    const row = this.catalog.pair(pair.pairId);
    const undoStarts = pair.undo.segments().map((s) => s.prevSeq);
    const applied = Math.max(row?.appliedSeq ?? 0, row?.historyFloor ?? 0, pair.undo.maxSeq, ...undoStarts);
    if (firstInLog <= applied + 1) return;
    const from = applied + 1;
    const to = firstInLog - 1;
    pair.alert = `acknowledged items missing: seq ${from}..${to} were neither applied nor found in the ingest log (a log segment was lost); points from seq ${from} on are refused until a resync ends, and the next open asks the process server for one`;
    pair.needsResync = true;
    const since = this.pointAtOrBefore(pair, applied).time;
    this.catalog.transaction(() => {
      this.catalog.updatePair(pair.pairId, { needsResync: true });
      this.catalog.startResync(pair.pairId, from, since);
      this.catalog.addEvent(pair.pairId, 'acknowledged-items-missing', pair.alert as string);
    });
    // Nothing in the logs says a resync is owed: this commit alone does.
    this.catalog.flushDurably();
    this.log.error({ pair: pair.pairId, fromSeq: from, toSeq: to }, 'acknowledged items missing from the ingest log');
  }

  /** The applied item's seq and time, as far as the logs know it (time 0 when not known). */
  private pointAtOrBefore(pair: PairRuntime, seq: number): ItemPoint {
    const last = pair.undo.lastItem;
    if (last && last.seq === seq) return last;
    if (pair.durableSeq === seq && pair.durableTime !== null) return { seq, time: pair.durableTime };
    return { seq, time: last && last.seq <= seq ? last.time : pair.oldest.time };
  }

  /** Reads a pair's undo log and brings its catalog rows in line with it. */
  private async openPairHistory(pairId: string, config: EnginePairConfig | null): Promise<void> {
    const row = this.catalog.ensurePair(pairId);
    const tags: Array<{ seq: number; time: number; kind: 'app' | 'crash'; name: string; group: string | null }> = [];
    const markers: Array<{ kind: 'start' | 'end'; seq: number; time: number }> = [];
    const undo = await UndoLog.open(
      this.options.retentionDir,
      pairId,
      this.opt('undoSegmentBytes'),
      (r: DecodedRecord, batch: LogBatch) => {
        if (r.kind === RecordKind.Tag) {
          const t = decodeTagPayload(batch.buffer.subarray(r.payloadStart, r.payloadStart + r.payloadLength));
          tags.push({ seq: r.seq, time: r.time, kind: t.kind, name: t.name, group: t.group });
        } else if (r.kind === RecordKind.ResyncStart) markers.push({ kind: 'start', seq: r.seq, time: r.time });
        else if (r.kind === RecordKind.ResyncEnd) markers.push({ kind: 'end', seq: r.seq, time: r.time });
      },
      (bytes) => this.makeRoom(bytes, false),
      this.catalog.segments(pairId),
    );
    if (undo.repairs.length > 0) this.log.warn({ pair: pairId, repairs: undo.repairs }, 'undo log put right after an unclean stop');
    const segments = undo.segments();
    const first = segments[0];
    const oldest: ItemPoint = first ? { seq: first.prevSeq, time: first.prevTime ?? 0 } : { seq: undo.maxSeq, time: undo.lastItem?.time ?? 0 };
    // The logs are the truth: the catalog is brought in line with them (after
    // a power cut it may lack its last commits, pruning's among them).
    this.catalog.transaction(() => {
      const onDisk = new Set(segments.map((s) => s.segment));
      for (const s of this.catalog.segments(pairId)) if (!onDisk.has(s.segment)) this.catalog.deleteSegment(pairId, s.segment);
      for (const s of segments) this.catalog.upsertSegment({ pairId, ...s });
      for (const t of tags) this.catalog.addTag({ pairId, ...t });
      for (const m of markers) {
        if (m.kind === 'start') this.catalog.startResync(pairId, m.seq, m.time);
        else this.catalog.endResync(pairId, m.seq, m.time);
      }
      if (first) {
        this.catalog.deleteTagsBefore(pairId, oldest.seq);
        this.catalog.deleteWindowsBefore(pairId, oldest.seq);
      }
    });
    this.addRuntime(pairId, config, row, undo, oldest);
  }

  private addRuntime(pairId: string, config: EnginePairConfig | null, row: ReturnType<Catalog['ensurePair']>, undo: UndoLog, oldest: ItemPoint): PairRuntime {
    const last = undo.lastItem;
    const windows = this.catalog.resyncWindows(pairId);
    const pair: PairRuntime = {
      pairId,
      config,
      appliedSeq: row.appliedSeq,
      appliedPoint: { seq: 0, time: 0 },
      undo,
      target: null,
      paused: config === null,
      resumeFrom: null,
      wantsResume: false,
      diskBytes: row.diskBytes,
      sectorBytes: row.sectorBytes,
      opened: false,
      lastSeq: 0,
      lastTime: 0,
      // The logs say what is durable; the catalog adds only the floor a commit left.
      durableSeq: Math.max(row.historyFloor, last?.seq ?? 0),
      durableTime: last?.time ?? null,
      needsResync: row.needsResync,
      inResync: windows.length > 0 && (windows[windows.length - 1] as { endSeq: number | null }).endSeq === null,
      failover: row.failover,
      failoverSeq: row.failoverSeq,
      lastError: config === null ? 'not in the configuration: retention kept until `mtagent pair purge`' : null,
      alert: null,
      oldest,
      pins: 0,
      ingestBytes: 0,
      session: 0,
      failingOver: false,
      lagBytes: 0,
      rate: { since: Date.now(), bytes: 0, perSecond: 0 },
      unrecordedMarkers: [],
    };
    if (pair.failover !== null) pair.paused = true;
    this.pairs.set(pairId, pair);
    return pair;
  }

  /** Opens (or creates) the pair's target; on failure the pair waits paused. */
  private async attachTarget(pair: PairRuntime, mustSucceed = false): Promise<boolean> {
    if (pair.config === null) return false;
    const fresh = pair.durableSeq === 0;
    try {
      const t = await TargetDisk.open({ path: pair.config.target, sizeBytes: fresh ? pair.config.sizeBytes ?? null : null });
      if (pair.config.sizeBytes && !t.blockDevice && t.sizeBytes !== pair.config.sizeBytes) {
        await t.close();
        throw new TargetError('size-mismatch', pair.config.target, `target ${pair.config.target} is ${t.sizeBytes} bytes but sizeBytes is ${pair.config.sizeBytes}`);
      }
      if (pair.diskBytes !== null && t.sizeBytes !== pair.diskBytes) {
        await t.close();
        throw new TargetError('size-mismatch', pair.config.target, `target ${pair.config.target} is ${t.sizeBytes} bytes; the pair's disk is ${pair.diskBytes}`);
      }
      pair.target = t;
      if (pair.failover === null) {
        pair.paused = false;
        pair.lastError = null;
      }
      return true;
    } catch (err) {
      pair.target = null;
      pair.paused = true;
      if (this.noteError(pair, err)) this.log.warn({ pair: pair.pairId, err: pair.lastError }, 'target unavailable; items are journaled until it returns');
      if (mustSucceed) throw err;
      return false;
    }
  }

  // ---- the ingest path ----------------------------------------------------

  /** Configured pair ids. */
  pairIds(): string[] {
    return [...this.pairs.values()].filter((p) => p.config !== null).map((p) => p.pairId);
  }

  /**
   * A process server opens a pair: checks it, makes everything accepted for
   * it durable, and tells where to continue.
   */
  async openPair(pairId: string, diskBytes: number, sectorBytes: number): Promise<{ durableSeq: number; needsResync: boolean; session: number }> {
    this.assertUsable();
    const pair = this.pairs.get(pairId);
    if (!pair || pair.config === null) throw new EngineError('unknown-pair', `pair ${pairId} is not configured on this agent`, pairId);
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
    await this.ingest.drain();
    if (session !== pair.session) throw new EngineError('superseded', `pair ${pairId} was opened again meanwhile`, pairId);
    pair.diskBytes = diskBytes;
    pair.sectorBytes = sectorBytes;
    pair.opened = true;
    pair.lastSeq = pair.durableSeq;
    pair.lastTime = pair.durableTime ?? 0;
    this.catalog.updatePair(pairId, { diskBytes, sectorBytes, durableSeq: pair.durableSeq });
    return { durableSeq: pair.durableSeq, needsResync: pair.needsResync, session };
  }

  /**
   * Accepts items of one pair, in order, and resolves with the pair's durable
   * seq once they are durable. If an item is refused, the items before it are
   * still made durable, then the refusal is thrown (EngineError with its seq).
   */
  async append(pairId: string, items: readonly StreamItem[], session?: number): Promise<number> {
    this.assertUsable();
    const pair = this.pairs.get(pairId);
    if (!pair || pair.config === null) throw new EngineError('unknown-pair', `pair ${pairId} is not configured on this agent`, pairId);
    assertNotFailedOver(pair);
    if (!pair.opened || pair.diskBytes === null || pair.sectorBytes === null) {
      throw new EngineError('not-open', `pair ${pairId} was not opened`, pairId);
    }
    // Back-pressure: a pair whose applier is far behind waits (a paused pair does not: it journals on).
    while (!pair.paused && !pair.failingOver && pair.lagBytes > this.opt('maxApplyLagBytes') && !this.closed) {
      await new Promise<void>((resolve) => {
        const list = this.lagWaiters.get(pairId) ?? [];
        list.push(resolve);
        this.lagWaiters.set(pairId, list);
      });
    }
    if (session !== undefined && session !== pair.session) {
      throw new EngineError('superseded', `pair ${pairId} was opened on another connection`, pairId, items[0]?.seq ?? null);
    }
    assertNotFailedOver(pair, items[0]?.seq ?? null);
    const records: PendingRecord[] = [];
    let refusal: EngineError | null = null;
    for (const item of items) {
      refusal = this.validate(pair, item);
      if (refusal) break;
      const time = Math.max(item.time, pair.lastTime);
      pair.lastSeq = item.seq;
      pair.lastTime = time;
      records.push(itemRecord(pairId, time === item.time ? item : { ...item, time }));
    }
    // Returned, not awaited: this call, and with it `items` (views of the
    // messages they arrived in), is let go while the batch is written.
    return this.journal(pair, records, refusal);
  }

  /** Makes the records durable; then the refusal, if any, is thrown. */
  private async journal(pair: PairRuntime, records: PendingRecord[], refusal: EngineError | null): Promise<number> {
    if (records.length > 0) {
      const firstSeq = (records[0] as PendingRecord).fields.seq;
      try {
        await this.ingest.append(records);
      } catch (err) {
        // Nothing of the failed batch is durable: the client resends from durableSeq.
        pair.lastSeq = pair.durableSeq;
        pair.lastTime = pair.durableTime ?? 0;
        if (err instanceof MtagentError && err.code === 'retention-full') {
          throw new EngineError('retention-full', err.message, pair.pairId, firstSeq);
        }
        throw err;
      }
    }
    if (refusal) throw refusal;
    return pair.durableSeq;
  }

  private validate(pair: PairRuntime, item: StreamItem): EngineError | null {
    const id = pair.pairId;
    if (!Number.isSafeInteger(item.seq) || item.seq !== pair.lastSeq + 1) {
      return new EngineError('seq-gap', `pair ${id}: expected seq ${pair.lastSeq + 1}, got ${item.seq}`, id, item.seq);
    }
    if (!Number.isSafeInteger(item.time) || item.time < 0) return new EngineError('bad-record', `pair ${id} seq ${item.seq}: bad time`, id, item.seq);
    if (item.kind === 'write') {
      const sector = pair.sectorBytes as number;
      const len = item.data.length;
      if (len === 0 || len > MAX_WRITE_BYTES) return new EngineError('bad-record', `pair ${id} seq ${item.seq}: length ${len} is not in 1..${MAX_WRITE_BYTES}`, id, item.seq);
      if (item.offset % sector !== 0 || len % sector !== 0) {
        return new EngineError('bad-record', `pair ${id} seq ${item.seq}: offset ${item.offset} and length ${len} must be multiples of ${sector}`, id, item.seq);
      }
      if (item.offset + len > (pair.diskBytes as number)) {
        return new EngineError('bad-record', `pair ${id} seq ${item.seq}: ${item.offset}+${len} is past the end of the ${pair.diskBytes}-byte disk`, id, item.seq);
      }
    } else if (item.kind === 'tag') {
      if (item.name.length === 0 || item.name.length > MAX_TAG_NAME) {
        return new EngineError('bad-record', `pair ${id} seq ${item.seq}: tag name must be 1..${MAX_TAG_NAME} characters`, id, item.seq);
      }
    }
    return null;
  }

  private noteDurable(pair: PairRuntime, kind: RecordKind, seq: number, time: number, writeBytes: number): void {
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
      pair.ingestBytes += writeBytes;
      if (seq > pair.appliedSeq) pair.lagBytes += writeBytes;
      pair.rate.bytes += writeBytes;
    }
  }

  private onDurable(batch: WrittenBatch): void {
    this.lastBatchAt = Date.now();
    for (const r of batch.records) {
      if (!r.item) continue;
      const pair = this.pairs.get(r.fields.pairId);
      if (pair) this.noteDurable(pair, r.fields.kind, r.item.seq, r.item.time, r.item.kind === 'write' ? r.item.data.length : 0);
    }
    this.applier.enqueue(fromWrittenBatch(batch));
  }

  // ---- the apply path -----------------------------------------------------

  private onApplied(pair: PairRuntime, result: ApplyResult): void {
    pair.lagBytes = Math.max(0, pair.lagBytes - result.itemBytes);
    this.bytesApplied += result.itemBytes;
    this.undoBytesWritten += result.undoBytes;
    pair.unrecordedMarkers.push(...result.markers);
    let failure: unknown = null;
    try {
      this.recordApplied(pair);
    } catch (err) {
      failure = err;
    }
    if (pair.lagBytes <= this.opt('maxApplyLagBytes')) this.wakeLagWaiters(pair.pairId);
    for (const w of this.appliedWaiters) {
      if (w.pairId === pair.pairId && pair.appliedSeq >= w.seq) {
        this.appliedWaiters.delete(w);
        w.resolve();
      }
    }
    // Thrown on to the applier, which pauses the pair; the step itself is on
    // the target and its before-images durable, so nothing is re-applied.
    if (failure !== null) throw failure;
  }

  /**
   * Writes what the applier did to the catalog: the applied seq, the undo
   * segments it touched, and every tag and resync marker not recorded yet.
   * The catalog is an index: after a crash start-up rebuilds it from the logs,
   * and a failed write here loses nothing but is retried.
   */
  private recordApplied(pair: PairRuntime): void {
    const seg = pair.undo.segments();
    const markers = pair.unrecordedMarkers;
    try {
      this.catalog.transaction(() => {
        this.catalog.updatePair(pair.pairId, { appliedSeq: pair.appliedSeq, durableSeq: pair.durableSeq });
        // Segments this step touched: the active one, and the one before if it just rolled.
        for (const s of seg.slice(-2)) this.catalog.upsertSegment({ pairId: pair.pairId, ...s });
        for (const m of markers) {
          if (m.kind === 'tag') this.catalog.addTag({ pairId: pair.pairId, seq: m.seq, time: m.time, kind: m.tagKind, name: m.name, group: m.group });
          else if (m.kind === 'resync-start') this.catalog.startResync(pair.pairId, m.seq, m.time);
          else if (m.kind === 'resync-end') {
            this.catalog.endResync(pair.pairId, m.seq, m.time);
            this.catalog.updatePair(pair.pairId, { needsResync: false });
          }
        }
      });
    } catch (err) {
      throw new MtagentError(
        'catalog-write-failed',
        `the catalog in ${this.options.dataDir} could not be written (${err instanceof Error ? err.message : String(err)}); applying resumes once it can`,
        { cause: err },
      );
    }
    pair.unrecordedMarkers = [];
  }

  /** Installed as the process's foregroundIo.giveWayWhen while this engine is open. */
  private readonly giveWay = (): boolean => this.acksComeFirst();

  /**
   * While the ingest log is busy and acknowledgements come first, the applier
   * waits, so a burst is made durable at the disk's full speed.
   */
  private applierShouldYield(): boolean {
    return this.ingest.busy && this.acksComeFirst();
  }

  /**
   * Acknowledgements come first (the applier yields to ingest between cycles,
   * and its I/O gives way to ingest writes between pieces) while no active
   * pair lags by more than half of maxApplyLagBytes, nobody waits on an
   * applied seq or for room, and the ingest log holds less than half of what
   * the volume may hold (so the undo logs keep room).
   */
  private acksComeFirst(): boolean {
    if (this.closed || this.appliedWaiters.size > 0 || this.lagWaiters.size > 0 || this.waitingForRoom > 0) return false;
    const watermark = this.opt('maxApplyLagBytes') / 2;
    for (const p of this.pairs.values()) if (!p.paused && p.lagBytes > watermark) return false;
    const capacity = this.lastSpace?.capacityBytes ?? 0;
    return this.ingest.usedBytesCached() < capacity / 2;
  }

  private wakeLagWaiters(pairId: string): void {
    const list = this.lagWaiters.get(pairId);
    if (!list) return;
    this.lagWaiters.delete(pairId);
    for (const w of list) w();
  }

  /**
   * For the systemd watchdog: true while the engine works — no fatal error,
   * and the ingest log either idle or finishing batches (one stuck for more
   * than `stuckMs` is not healthy).
   */
  healthy(stuckMs = 20_000): boolean {
    if (this.fatal !== null || this.closed) return false;
    return !this.ingest.busy || Date.now() - this.lastBatchAt < stuckMs;
  }

  private lastBatchAt = Date.now();

  /** Bytes written to the retention volume since open: ingest batches and undo batches. */
  retentionBytesWritten(): number {
    let undo = 0;
    for (const p of this.pairs.values()) undo += p.undo.bytesWritten;
    return this.ingest.bytesWritten + undo;
  }

  private onPaused(pair: PairRuntime, err: unknown): void {
    // A pair taken out of the configuration closed its target on purpose; the
    // write that was in flight failing on it is not the news an operator needs.
    if (pair.config === null) {
      this.wakeLagWaiters(pair.pairId);
      return;
    }
    const news = this.noteError(pair, err);
    const targetGone = pair.target !== null && !pair.target.stillAttached();
    if (news) this.log.warn({ pair: pair.pairId, appliedSeq: pair.appliedSeq, err: pair.lastError }, 'applying paused for this pair; ingest goes on');
    this.wakeLagWaiters(pair.pairId);
    if (targetGone && pair.target) {
      const t = pair.target;
      pair.target = null;
      void t.close().catch(() => undefined);
    }
  }

  /**
   * Records the error a pair's target or applying failed with; true when it is
   * news. The same failure again (a retry every targetRetryMs while a disk is
   * away) is not logged again: status shows it, the log says when it changes.
   */
  private noteError(pair: PairRuntime, err: unknown): boolean {
    const message = err instanceof Error ? err.message : String(err);
    const news = pair.lastError !== message;
    pair.lastError = message;
    return news;
  }

  private onResumed(pair: PairRuntime): void {
    // Markers a failed catalog write left must be recorded before the pair counts as resumed.
    if (pair.unrecordedMarkers.length > 0) {
      try {
        this.recordApplied(pair);
      } catch (err) {
        pair.paused = true;
        this.noteError(pair, err);
        return;
      }
    }
    pair.lastError = null;
    this.log.info({ pair: pair.pairId, appliedSeq: pair.appliedSeq }, 'applying resumed');
  }

  private onFatal(err: unknown, what = 'the applier stopped on an error it cannot pass'): void {
    if (this.fatal !== null) return;
    this.fatal = err;
    this.log.fatal({ err }, what);
    this.reportFatal(err);
  }

  private retryPausedPairs(): void {
    if (this.closed) return;
    for (const pair of this.pairs.values()) {
      if (!pair.paused || pair.config === null || pair.failover !== null || pair.wantsResume) continue;
      void (async () => {
        if (pair.target && !pair.target.stillAttached()) {
          const t = pair.target;
          pair.target = null;
          await t.close().catch(() => undefined);
        }
        if (pair.target === null && !(await this.attachTarget(pair))) return;
        pair.paused = true;
        pair.wantsResume = true;
        this.applier.poke();
      })().catch((err: unknown) => this.log.error({ err, pair: pair.pairId }, 'retrying the target failed'));
    }
  }

  /** Whether the pair's target is attached (cheap: for the endpoint's informational notice). */
  targetAttached(pairId: string): boolean {
    const pair = this.pairs.get(pairId);
    return pair !== undefined && pair.target !== null && !(pair.paused && pair.lastError !== null && !pair.target.stillAttached());
  }

  /** The reason a pair's target is unavailable, if it is. */
  targetProblem(pairId: string): string | null {
    const pair = this.pairs.get(pairId);
    return pair?.lastError ?? null;
  }

  /** Resolves once the pair has applied `seq` (or rejects after `timeoutMs`). */
  waitApplied(pairId: string, seq: number, timeoutMs = 60_000): Promise<void> {
    const pair = this.requirePair(pairId);
    if (pair.appliedSeq >= seq) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter = { pairId, seq, resolve: () => { clearTimeout(timer); resolve(); } };
      const timer = setTimeout(() => {
        this.appliedWaiters.delete(waiter);
        reject(new EngineError('target-unavailable', `pair ${pairId} did not apply seq ${seq} within ${timeoutMs} ms (applied ${pair.appliedSeq}${pair.lastError ? `: ${pair.lastError}` : ''})`, pairId));
      }, timeoutMs);
      this.appliedWaiters.add(waiter);
      this.applier.poke();
    });
  }

  /** Waits until everything durable is applied for every pair that can apply. */
  async settle(timeoutMs = 60_000): Promise<void> {
    await this.ingest.drain();
    await Promise.all(
      [...this.pairs.values()].filter((p) => !p.paused && p.config !== null).map((p) => this.waitApplied(p.pairId, p.durableSeq, timeoutMs)),
    );
  }

  // ---- space and history -------------------------------------------------

  async space(): Promise<SpaceAccount> {
    let undoBytes = 0;
    for (const p of this.pairs.values()) {
      for (const s of p.undo.segments()) undoBytes += s.bytes;
      undoBytes += p.undo.spareBytes;
    }
    this.lastSpace = await measureSpace(this.options.retentionDir, this.ingest?.usedBytes() ?? 0, undoBytes, this.options.maxBytes ?? null, this.opt('reserveBytes'));
    return this.lastSpace;
  }

  /**
   * Makes room for `bytes` more on the retention volume: shortens history
   * (oldest undo segments first, logged and recorded), and for the ingest log
   * then waits for the applier to free segments (back-pressure), and only
   * then refuses with `retention-full`.
   */
  private async makeRoom(bytes: number, mayWait: boolean): Promise<void> {
    // Once a wait ran out with nothing freed, appends are refused at once
    // until room is found again: each waiting its own spaceWaitMs would hold
    // every later message of the connection, a reopen included, that long.
    const deadline = Date.now() + (mayWait && !this.volumeFull ? this.opt('spaceWaitMs') : 0);
    for (;;) {
      // A segment the applier recycled meanwhile needs no new space.
      if (mayWait && this.ingest?.hasSpare()) {
        this.volumeFull = false;
        return;
      }
      const account = await this.space();
      if (account.availableBytes >= bytes) {
        if (mayWait) this.volumeFull = false;
        return;
      }
      // Idle recycled ingest segments go before any history does (one is kept for the next roll).
      if (this.ingest && this.ingest.dropSpares(mayWait ? 0 : 1) > 0) continue;
      // Then recycled undo segments, which hold no history either.
      let sparesFreed = 0;
      for (const p of this.pairs.values()) sparesFreed += p.undo.dropSpares();
      if (sparesFreed > 0) continue;
      if (this.pruneForSpace(bytes - account.availableBytes) > 0) continue;
      if (Date.now() >= deadline || this.closed) {
        if (mayWait) this.volumeFull = true;
        throw new EngineError(
          'retention-full',
          `the retention volume has ${account.availableBytes} of ${account.capacityBytes} bytes free and no history left to drop; ${bytes} more are needed`,
        );
      }
      this.waitingForRoom++;
      try {
        this.applier?.poke();
        await sleep(50);
      } finally {
        this.waitingForRoom--;
      }
    }
  }

  /** Drops the oldest closed undo segments across pairs until `need` bytes are freed. */
  private pruneForSpace(need: number): number {
    const candidates: Array<{ pair: PairRuntime; segment: number; lastTime: number; bytes: number }> = [];
    for (const pair of this.pairs.values()) {
      if (pair.pins > 0 || pair.failover !== null) continue;
      const segs = pair.undo.segments();
      for (const s of segs.slice(0, -1)) candidates.push({ pair, segment: s.segment, lastTime: s.lastTime ?? 0, bytes: s.bytes });
    }
    candidates.sort((a, b) => a.lastTime - b.lastTime);
    let freed = 0;
    for (const c of candidates) {
      if (freed >= need) break;
      // Segments of a pair go oldest first only.
      if (c.pair.undo.segments()[0]?.segment !== c.segment) continue;
      this.dropOldestSegment(c.pair, 'space');
      freed += c.bytes;
    }
    return freed;
  }

  /** Drops undo segments older than the retention window (source time). */
  async pruneByTime(): Promise<number> {
    let dropped = 0;
    for (const pair of this.pairs.values()) {
      if (pair.pins > 0 || pair.failover !== null || pair.durableTime === null) continue;
      const cutoff = pair.durableTime - this.options.policy.retentionSeconds * 1e6;
      for (;;) {
        const segs = pair.undo.segments();
        const oldest = segs[0];
        if (segs.length < 2 || !oldest || oldest.lastTime === null || oldest.lastTime >= cutoff) break;
        this.dropOldestSegment(pair, 'time');
        dropped++;
      }
    }
    return dropped;
  }

  private dropOldestSegment(pair: PairRuntime, reason: 'time' | 'space'): void {
    const segs = pair.undo.segments();
    const victim = segs[0];
    const next = segs[1];
    if (!victim || !next) return;
    // Dropped for time, the pair goes on writing history at the same pace: its file becomes the next segment.
    pair.undo.removeSegment(victim.segment, reason === 'time');
    pair.oldest = { seq: next.prevSeq, time: next.prevTime ?? 0 };
    this.catalog.transaction(() => {
      this.catalog.deleteSegment(pair.pairId, victim.segment);
      this.catalog.deleteTagsBefore(pair.pairId, pair.oldest.seq);
      this.catalog.deleteWindowsBefore(pair.pairId, pair.oldest.seq);
      if (reason === 'space') {
        this.catalog.addEvent(pair.pairId, 'history-shortened', `retention volume short of space: oldest point is now seq ${pair.oldest.seq} (${new Date(pair.oldest.time / 1000).toISOString()})`);
      }
    });
    const log = reason === 'space' ? this.log.warn.bind(this.log) : this.log.info.bind(this.log);
    log({ pair: pair.pairId, segment: victim.segment, oldestSeq: pair.oldest.seq, reason }, reason === 'space' ? 'history shortened for space' : 'history past the retention window dropped');
  }

  // ---- reconfiguration (SIGHUP) -------------------------------------------

  /**
   * Takes a new set of pairs and a new policy without a restart. Added pairs
   * open (or come back with their retention); removed ones stop applying and
   * keep their retention until purged. Returns what changed.
   */
  async reconfigure(pairs: readonly EnginePairConfig[], policy: EnginePolicy, maxBytes: number | null): Promise<{ added: string[]; removed: string[]; changed: string[] }> {
    assertRetentionFits(maxBytes, pairs.length, this.options);
    const next = new Map(pairs.map((p) => [p.id, p]));
    const added: string[] = [];
    const removed: string[] = [];
    const changed: string[] = [];
    for (const pair of this.pairs.values()) {
      const cfg = next.get(pair.pairId);
      if (pair.config !== null && cfg === undefined) {
        removed.push(pair.pairId);
        pair.config = null;
        pair.paused = true;
        pair.opened = false;
        pair.session++;
        pair.lastError = 'not in the configuration: retention kept until `mtagent pair purge`';
        const t = pair.target;
        pair.target = null;
        await t?.close().catch(() => undefined);
      } else if (cfg !== undefined && pair.config !== null && (cfg.target !== pair.config.target || (cfg.group ?? null) !== (pair.config.group ?? null))) {
        changed.push(pair.pairId);
        const targetMoved = cfg.target !== pair.config.target;
        pair.config = cfg;
        if (targetMoved) {
          // Another disk: nothing proves it holds what the old one did.
          const t = pair.target;
          pair.target = null;
          await t?.close().catch(() => undefined);
          pair.needsResync = true;
          this.catalog.updatePair(pair.pairId, { needsResync: true });
          this.catalog.flushDurably();
          if (await this.attachTarget(pair)) pair.wantsResume = true;
        }
      } else if (cfg !== undefined && pair.config === null) {
        added.push(pair.pairId);
        pair.config = cfg;
        pair.lastError = null;
        if (pair.failover === null && (await this.attachTarget(pair))) {
          pair.paused = true;
          pair.wantsResume = true;
        }
      }
    }
    for (const cfg of pairs) {
      if (this.pairs.has(cfg.id)) continue;
      added.push(cfg.id);
      await this.openPairHistory(cfg.id, cfg);
      const pair = this.pairs.get(cfg.id) as PairRuntime;
      pair.appliedSeq = pair.durableSeq;
      pair.appliedPoint = this.pointAtOrBefore(pair, pair.appliedSeq);
      pair.lastSeq = pair.durableSeq;
      await this.attachTarget(pair);
    }
    (this.options as { policy: EnginePolicy }).policy = policy;
    (this.options as { maxBytes?: number | null }).maxBytes = maxBytes;
    (this.options as { pairs: readonly EnginePairConfig[] }).pairs = pairs;
    this.applier.poke();
    for (const id of added) this.catalog.addEvent(id, 'configured', 'pair added to the configuration');
    for (const id of removed) this.catalog.addEvent(id, 'unconfigured', 'pair removed from the configuration; retention kept');
    return { added, removed, changed };
  }

  // ---- recovery support --------------------------------------------------

  /** Keeps a pair's history from being pruned while it is read; call the result to release. */
  pin(pairId: string): () => void {
    const pair = this.requirePair(pairId);
    pair.pins++;
    let released = false;
    return () => {
      if (!released) {
        released = true;
        pair.pins--;
      }
    };
  }

  /**
   * Fixes what `mtagent verify` reads while replication goes on: the durable
   * ends of both logs at this moment; the pair's history is pinned until
   * `release`, and ingest segments are not recycled until `releaseIngest`
   * (the ingest log grows meanwhile, so it is read first).
   */
  holdForReading(pairId: string): { undoEnd: LogPosition; ingestEnd: LogPosition; releaseIngest: () => void; release: () => void } {
    const pair = this.requirePair(pairId);
    const unpin = this.pin(pairId);
    const unhold = this.ingest.holdRecycling();
    return {
      undoEnd: pair.undo.durableEnd,
      ingestEnd: this.ingest.end,
      releaseIngest: unhold,
      release: () => {
        unhold();
        unpin();
      },
    };
  }

  history(pairId: string): PairHistory {
    const pair = this.requirePair(pairId);
    const failedOver = pair.failover === 'failed-over' && pair.failoverSeq !== null;
    return {
      pairId,
      diskBytes: pair.diskBytes ?? pair.target?.sizeBytes ?? 0,
      target: pair.target,
      targetSeq: failedOver ? (pair.failoverSeq as number) : pair.appliedSeq,
      rollbackFromSeq: failedOver ? (pair.failoverSeq as number) : Math.max(pair.appliedSeq, pair.undo.maxSeq),
      oldest: pair.oldest,
      undo: pair.undo,
      durableSeq: failedOver ? (pair.failoverSeq as number) : pair.durableSeq,
      // lastError, not paused: a paused pair is retried every targetRetryMs, and
      // is unpaused while each retry catches up, but the error stands until one
      // has caught up (onResumed). A wait on `paused` could start inside a retry
      // that fails, and wait its whole timeout.
      applyPausedBy: pair.failover === null && pair.config !== null ? pair.lastError : null,
    };
  }

  /** A pair's group from the configuration. */
  groupOf(pairId: string): string | null {
    return this.pairs.get(pairId)?.config?.group ?? null;
  }

  /**
   * Failover in place: no more replication for the pair; its target is
   * rolled back to `seq`. Survives a crash half-way: it is finished at the
   * next start.
   */
  async failover(pairId: string, seq: number): Promise<void> {
    const pair = this.requirePair(pairId);
    if (pair.failover === 'failed-over') throw new EngineError('failed-over', `pair ${pairId} is already failed over (to seq ${pair.failoverSeq})`, pairId);
    if (pair.target === null) throw new EngineError('target-unavailable', `pair ${pairId}: target unavailable (${pair.lastError ?? 'not open'})`, pairId);
    // Appends are refused from here, so the drain ends and the durable seq
    // stops moving; then everything durable goes onto the target, so the undo
    // log covers it and no step of the applier is left to land after the rollback.
    if (pair.failingOver) throw new EngineError('bad-request', `pair ${pairId} is already being failed over`, pairId);
    pair.failingOver = true;
    try {
      this.wakeLagWaiters(pairId);
      await this.ingest.drain();
      await this.waitApplied(pairId, pair.durableSeq);
    } finally {
      pair.failingOver = false;
    }
    pair.failover = 'rolling-back';
    pair.failoverSeq = seq;
    pair.paused = true;
    this.catalog.updatePair(pairId, { failover: 'rolling-back', failoverSeq: seq });
    this.catalog.flushDurably();
    await this.rollTargetBack(pair, seq);
  }

  private async rollTargetBack(pair: PairRuntime, seq: number): Promise<void> {
    const target = pair.target as TargetDisk;
    const unpin = this.pin(pair.pairId);
    try {
      await rollBack(pair.undo, target, seq, pair.appliedSeq);
      await target.flush();
    } finally {
      unpin();
    }
    pair.failover = 'failed-over';
    this.catalog.transaction(() => {
      this.catalog.updatePair(pair.pairId, { failover: 'failed-over', failoverSeq: seq });
      this.catalog.deleteTagsAfter(pair.pairId, seq);
      this.catalog.addEvent(pair.pairId, 'failover', `target rolled back to seq ${seq}; replication stopped until commit`);
    });
    this.catalog.flushDurably();
    this.log.warn({ pair: pair.pairId, seq }, 'pair failed over: target rolled back');
  }

  /** After a failover: drops the pair's retention; the next open needs a resync. */
  async commit(pairId: string): Promise<void> {
    const pair = this.requirePair(pairId);
    if (pair.failover !== 'failed-over') throw new EngineError('bad-request', `pair ${pairId} is not failed over; only a failed-over pair can be committed`, pairId);
    await pair.undo.destroy();
    pair.undo = await UndoLog.open(this.options.retentionDir, pairId, this.opt('undoSegmentBytes'), undefined, (b) => this.makeRoom(b, false));
    pair.appliedSeq = pair.durableSeq;
    pair.appliedPoint = { seq: pair.durableSeq, time: pair.durableTime ?? 0 };
    pair.oldest = { ...pair.appliedPoint };
    pair.failover = null;
    pair.failoverSeq = null;
    pair.needsResync = true;
    pair.inResync = false;
    pair.paused = pair.target === null;
    pair.resumeFrom = null;
    this.catalog.dropHistory(pairId);
    this.catalog.updatePair(pairId, { failover: null, failoverSeq: null, needsResync: true, appliedSeq: pair.appliedSeq, historyFloor: pair.durableSeq });
    this.catalog.addEvent(pairId, 'commit', 'retention dropped after failover; the next open needs a resync');
    this.catalog.flushDurably();
    this.log.warn({ pair: pairId }, 'pair committed: retention dropped');
  }

  /** Deletes retention and catalog of a pair that is no longer configured. */
  async purge(pairId: string): Promise<void> {
    const pair = this.pairs.get(pairId);
    if (pair === undefined) throw new EngineError('unknown-pair', `pair ${pairId} has no retention here`, pairId);
    if (pair.config !== null) throw new EngineError('bad-request', `pair ${pairId} is still in the configuration; remove it there first`, pairId);
    await pair.undo.destroy();
    this.pairs.delete(pairId);
    // Its items still in the ingest log are all before the end once what was handed over is written.
    await this.ingest.drain();
    this.catalog.deletePair(pairId, this.ingest.end);
    this.catalog.addEvent(pairId, 'purge', 'retention and metadata deleted');
    this.catalog.flushDurably();
    this.ingest.release(this.applier.releasePosition());
  }

  // ---- status ----------------------------------------------------------

  /** Closes each pair's ingest-rate window: status reports the last whole one, and reading it changes nothing. */
  private rollRates(): void {
    const now = Date.now();
    for (const pair of this.pairs.values()) {
      const elapsed = (now - pair.rate.since) / 1000;
      if (elapsed <= 0) continue;
      pair.rate = { since: now, bytes: 0, perSecond: pair.rate.bytes / elapsed };
    }
  }

  status(pairId: string): PairStatus {
    const pair = this.requirePair(pairId);
    const nowUs = this.now();
    const rpoSeconds = pair.durableTime !== null && pair.durableTime > 0 ? Math.max(0, (nowUs - pair.durableTime) / 1e6) : null;
    const threshold = this.options.policy.rpoThresholdSeconds;
    let journalBytes = 0;
    for (const s of pair.undo.segments()) journalBytes += s.bytes;
    return {
      pair: pairId,
      group: pair.config?.group ?? null,
      state: this.stateOf(pair),
      configured: pair.config !== null,
      target: pair.config?.target ?? null,
      diskBytes: pair.diskBytes,
      durableSeq: pair.durableSeq,
      appliedSeq: pair.appliedSeq,
      oldestSeq: pair.oldest.seq,
      oldestTime: pair.oldest.time || null,
      latestTime: pair.appliedPoint.time || null,
      rpoSeconds,
      rpoHealth: rpoSeconds === null ? null : rpoSeconds > 2 * threshold ? 'critical' : rpoSeconds > threshold ? 'warning' : 'ok',
      journalBytes,
      ingestBytesPerSecond: pair.rate.perSecond,
      applyLagBytes: pair.lagBytes,
      needsResync: pair.needsResync,
      lastError: pair.alert ?? pair.lastError,
    };
  }

  private stateOf(pair: PairRuntime): PairStateName {
    if (pair.failover !== null) return 'failed-over';
    if (pair.config === null || pair.alert !== null) return 'error';
    if (pair.target === null) return 'target-unavailable';
    if (pair.paused) return 'error';
    if (pair.inResync) return 'resyncing';
    if (pair.durableSeq === 0 || pair.needsResync) return 'unprotected';
    return 'protected';
  }

  // ---- shutdown --------------------------------------------------------

  /** Makes everything accepted durable, lets the applier finish its cycle, and closes. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    await this.ingest.close();
    await this.applier.stop();
    for (const w of this.appliedWaiters) w.resolve();
    this.appliedWaiters.clear();
    for (const id of [...this.lagWaiters.keys()]) this.wakeLagWaiters(id);
    for (const pair of this.pairs.values()) {
      await pair.undo.close();
      await pair.target?.close();
    }
    this.catalog.flushDurably();
    this.catalog.close();
    await this.lock.release();
    if (foregroundIo.giveWayWhen === this.giveWay) foregroundIo.giveWayWhen = () => false;
  }

  private requirePair(pairId: string): PairRuntime {
    const pair = this.pairs.get(pairId);
    if (!pair) throw new EngineError('unknown-pair', `pair ${pairId} is not known to this agent`, pairId);
    return pair;
  }

  private assertUsable(): void {
    if (this.closed) throw new MtagentError('ERR_CLOSED', 'the engine is closed');
    if (this.fatal !== null) throw new MtagentError('internal', `the engine stopped: ${this.fatal instanceof Error ? this.fatal.message : String(this.fatal)}`);
  }
}
