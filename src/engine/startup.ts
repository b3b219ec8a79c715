// Start-up: every pair's undo log read and the catalog brought in line with
// it, the ingest log's tail scanned (what is durable and not yet applied),
// acknowledged items found missing flagged, the targets opened, and the
// applier set at the earliest item an active pair still needs. After a
// crash or a power cut this is the whole of recovery: idempotent, and never
// asking an operator to delete files.
import { join } from 'node:path';
import { Applier, batchSlabBytes, extentSlabBytes, type ApplierOptions } from '../apply/applier';
import { SlabCarver, SlabPool } from '../apply/slab-pool';
import { IngestLog } from '../journal/ingest-log';
import { decodeTagPayload, isItemRecord } from '../journal/items';
import { RecordKind, type DecodedRecord } from '../journal/record';
import { comparePositions, type LogBatch, type LogPosition } from '../journal/segment-log';
import { UndoLog, pairsWithRetention, type ItemPoint } from '../journal/undo-log';
import type { EngineCore } from './core';
import type { IngestPath } from './ingest';
import type { EngineOptions, EnginePairConfig } from './options';
import type { PairRuntime } from './pairs';

/** Idle applier slabs but the last one given back keep their pages this long (ms), then give them back. */
const IDLE_SLAB_DISCARD_MS = 100;

export interface StartupHooks {
  ingest: IngestPath;
  /** Makes room on the retention volume for a new segment (the pruner). */
  makeRoom(bytes: number, mayWait: boolean): Promise<void>;
  attachTarget(pair: PairRuntime): Promise<boolean>;
  /** The applier's callbacks, wired to the engine's parts. */
  applierCallbacks: Pick<ApplierOptions<PairRuntime>, 'onApplied' | 'onPaused' | 'onResumed' | 'onError' | 'shouldYield' | 'mayGather'>;
}

/**
 * A pair's undo log, read through: `onRecord` sees every record read, and
 * the closed segments the catalog indexes (`known`) are taken from it.
 */
export function openUndoLog(
  core: EngineCore,
  hooks: Pick<StartupHooks, 'makeRoom'>,
  pairId: string,
  read: { onRecord?: (r: DecodedRecord, b: LogBatch) => void; known?: ReturnType<EngineCore['catalog']['segments']> } = {},
): Promise<UndoLog> {
  return UndoLog.open(core.paths.retentionDir, pairId, core.sizes.undoSegmentBytes, {
    ...read,
    beforeAllocate: (bytes) => hooks.makeRoom(bytes, false),
    priority: core.io,
  });
}

/** Reads a pair's undo log and brings its catalog rows in line with it: the logs are the truth. */
export async function openPairHistory(core: EngineCore, hooks: Pick<StartupHooks, 'makeRoom'>, pairId: string, config: EnginePairConfig | null): Promise<PairRuntime> {
  const { catalog } = core;
  const row = catalog.ensurePair(pairId);
  const tags: Array<{ seq: number; time: number; kind: 'app' | 'crash'; name: string; group: string | null }> = [];
  const markers: Array<{ kind: 'start' | 'end'; seq: number; time: number }> = [];
  const onRecord = (r: DecodedRecord, batch: LogBatch): void => {
    if (r.kind === RecordKind.Tag) {
      const t = decodeTagPayload(batch.buffer.subarray(r.payloadStart, r.payloadStart + r.payloadLength));
      tags.push({ seq: r.seq, time: r.time, kind: t.kind, name: t.name, group: t.group });
    } else if (r.kind === RecordKind.ResyncStart) markers.push({ kind: 'start', seq: r.seq, time: r.time });
    else if (r.kind === RecordKind.ResyncEnd) markers.push({ kind: 'end', seq: r.seq, time: r.time });
  };
  const undo = await openUndoLog(core, hooks, pairId, { onRecord, known: catalog.segments(pairId) });
  if (undo.repairs.length > 0) core.log.warn({ pair: pairId, repairs: undo.repairs }, 'undo log put right after an unclean stop');
  const segments = undo.segments();
  const first = segments[0];
  const oldest: ItemPoint = first ? { seq: first.prevSeq, time: first.prevTime ?? 0 } : { seq: undo.maxSeq, time: undo.lastItem?.time ?? 0 };
  // After a power cut the catalog may lack its last commits, pruning's among them.
  catalog.transaction(() => {
    const onDisk = new Set(segments.map((s) => s.segment));
    for (const s of catalog.segments(pairId)) if (!onDisk.has(s.segment)) catalog.deleteSegment(pairId, s.segment);
    for (const s of segments) catalog.upsertSegment({ pairId, ...s });
    for (const t of tags) catalog.addTag({ pairId, ...t });
    for (const m of markers) {
      if (m.kind === 'start') catalog.startResync(pairId, m.seq, m.time);
      else catalog.endResync(pairId, m.seq, m.time);
    }
    if (first) {
      catalog.deleteTagsBefore(pairId, oldest.seq);
      catalog.deleteWindowsBefore(pairId, oldest.seq);
    }
  });
  const windows = catalog.resyncWindows(pairId);
  const inResync = windows.length > 0 && (windows[windows.length - 1] as { endSeq: number | null }).endSeq === null;
  return core.pairs.add({ pairId, config, undo, oldest, row, inResync, windows: () => catalog.resyncWindows(pairId) });
}

/** The applied item's seq and time, as far as the logs know it (time 0 when not known). */
export function pointAtOrBefore(pair: PairRuntime, seq: number): ItemPoint {
  const last = pair.undo.lastItem;
  if (last && last.seq === seq) return last;
  if (pair.durableSeq === seq && pair.durableTime !== null) return { seq, time: pair.durableTime };
  return { seq, time: last && last.seq <= seq ? last.time : pair.oldest.time };
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
function flagLostItems(core: EngineCore, pair: PairRuntime, firstInLog: number): void {
  const { catalog } = core;
  const row = catalog.pair(pair.pairId);
  const undoStarts = pair.undo.segments().map((s) => s.prevSeq);
  const applied = Math.max(row?.appliedSeq ?? 0, row?.historyFloor ?? 0, pair.undo.maxSeq, ...undoStarts);
  if (firstInLog <= applied + 1) return;
  const from = applied + 1;
  const to = firstInLog - 1;
  const alert = `acknowledged items missing: seq ${from}..${to} were neither applied nor found in the ingest log (a log segment was lost); points from seq ${from} on are refused until a resync ends, and the next open asks the process server for one`;
  pair.state.raiseAlert(alert);
  pair.needsResync = true;
  const since = pointAtOrBefore(pair, applied).time;
  catalog.transaction(() => {
    catalog.updatePair(pair.pairId, { needsResync: true });
    catalog.startResync(pair.pairId, from, since);
    catalog.addEvent(pair.pairId, 'acknowledged-items-missing', alert);
  });
  // Nothing in the logs says a resync is owed: this commit alone does.
  catalog.flushDurably();
  core.log.error({ pair: pair.pairId, fromSeq: from, toSeq: to }, 'acknowledged items missing from the ingest log');
}

/** Opens the retention volume's logs and the pairs, and sets up the applier: the engine is then ready. */
export async function startUp(
  core: EngineCore,
  options: Pick<EngineOptions, 'applierSlabBytes' | 'poisonFreedMemory'>,
  hooks: StartupHooks,
): Promise<{ ingestEnd: LogPosition; batchesScanned: number }> {
  const { catalog, sizes } = core;
  const configured = new Map(core.config.pairs.map((p) => [p.id, p]));
  // Pairs with retention on the volume count too (a catalog lost or replaced): their history is not ignored.
  const known = new Set([...configured.keys(), ...catalog.pairs().map((p) => p.pairId), ...pairsWithRetention(core.paths.retentionDir)]);
  for (const pairId of known) await openPairHistory(core, hooks, pairId, configured.get(pairId) ?? null);

  const purged = catalog.purgedPairs();
  // The ingest log's tail: what is durable but not yet applied.
  const firstUnapplied = new Map<string, { position: LogPosition; seq: number }>();
  // Each ingest batch is encoded in memory carved from these slabs, which
  // goes on to the applier with the durable batch; the applier reads
  // batches back from the log into the same pool. When the applier's queue
  // overflows, all it held is idle at once: kept, it is what the next
  // batches take instead of new memory (peak use is the same).
  const batchSlab = options.applierSlabBytes ?? batchSlabBytes(sizes.maxBatchBytes);
  const poison = options.poisonFreedMemory ?? false;
  const batchMemory = new SlabPool(batchSlab, Math.ceil(sizes.applierMemoryBytes / batchSlab) + 2, poison, 1, IDLE_SLAB_DISCARD_MS);
  // Two cycles hold extents at once (stage A and stage B), and both come
  // back when the applier goes idle: kept, the next burst reuses both
  // instead of mapping a new slab and dropping one every time. The second
  // gives its pages back meanwhile, so an idle applier holds one slab's RSS.
  const extentSlab = options.applierSlabBytes ?? extentSlabBytes(sizes.cycleBytes, sizes.maxBatchBytes);
  const extentMemory = new SlabPool(extentSlab, 2, poison, 1, IDLE_SLAB_DISCARD_MS);
  const staging = new SlabCarver(batchMemory);
  const { log, scan } = await IngestLog.open(
    {
      dir: join(core.paths.retentionDir, 'ingest'),
      segmentBytes: sizes.ingestSegmentBytes,
      maxBatchBytes: sizes.maxBatchBytes,
      beforeAllocate: (bytes) => hooks.makeRoom(bytes, true),
      onBatch: (batch) => hooks.ingest.onDurable(batch),
      onFailed: (err) => core.stopOn(err, 'the ingest log failed: nothing more can be made durable'),
      onIdle: () => core.applier?.poke(),
      stagingSource: staging,
      priority: core.io,
    },
    (batch) => {
      for (const r of batch.records) {
        if (!isItemRecord(r)) continue;
        const pair = core.pairs.get(r.pairId);
        // Items of a purged pair: nothing of it is kept, and they are applied to nothing,
        // not even to a pair added again under the same id.
        const purgedAt = purged.get(r.pairId);
        if (pair === undefined || (purgedAt !== undefined && comparePositions(batch, purgedAt) < 0)) continue;
        const catalogApplied = catalog.pair(r.pairId)?.appliedSeq ?? 0;
        if (r.seq > catalogApplied && !firstUnapplied.has(r.pairId)) {
          firstUnapplied.set(r.pairId, { position: { segment: batch.segment, fileOffset: batch.fileOffset }, seq: r.seq });
        }
        hooks.ingest.noteDurable(pair, r.kind, r.seq, r.time, r.kind === RecordKind.Write ? r.payloadLength : 0);
      }
    },
  );
  core.ingest = log;
  if (scan.tornTail) core.log.warn({ tornTail: scan.tornTail }, 'ingest log ended in a torn batch (never acknowledged); continuing before it');
  if (log.sparedAtOpen.length > 0) core.log.warn({ segments: log.sparedAtOpen }, 'ingest segments past the end held nothing whole (made or torn just before a crash): kept as spares');

  for (const pair of core.pairs.all()) {
    const remembered = catalog.pair(pair.pairId)?.durableSeq ?? 0;
    if (remembered > pair.durableSeq) {
      const alert = `acknowledged items missing: the catalog recorded seq ${remembered} as durable, the logs end at seq ${pair.durableSeq}; the retention volume lost data (run mtagent verify ${pair.pairId})`;
      pair.state.raiseAlert(alert);
      catalog.addEvent(pair.pairId, 'acknowledged-items-missing', alert);
      core.log.error({ pair: pair.pairId, catalogDurableSeq: remembered, logDurableSeq: pair.durableSeq }, 'acknowledged items missing from the logs');
    }
    const first = firstUnapplied.get(pair.pairId);
    // A failed-over pair applies nothing more, and its commit drops its history: not checked.
    if (first && pair.state.failover === null) flagLostItems(core, pair, first.seq);
    // Everything before the first unapplied item in the log was applied: it is either
    // at or below the catalog's checkpoint, or its segment was recycled, which
    // happens only after it was applied.
    pair.appliedSeq = first ? first.seq - 1 : pair.durableSeq;
    pair.lastSeq = pair.durableSeq;
    pair.lastTime = pair.durableTime ?? 0;
    pair.appliedPoint = pointAtOrBefore(pair, pair.appliedSeq);
    if (pair.config && pair.state.failover === null) await hooks.attachTarget(pair);
  }
  // The applier starts at the earliest item an active pair still needs; a
  // paused pair keeps its own place and catches up when it resumes.
  let cursor: LogPosition = scan.end;
  for (const pair of core.pairs.all()) {
    const first = firstUnapplied.get(pair.pairId);
    if (!first) continue;
    if (pair.state.paused) pair.state.resumeAtStart(first.position);
    else if (comparePositions(first.position, cursor) < 0) cursor = first.position;
  }
  core.applier = new Applier(
    {
      ingest: core.ingest,
      pairs: core.pairs.asMap(),
      cycleBytes: sizes.cycleBytes,
      maxStepBytes: Math.floor(sizes.undoSegmentBytes / 2) - 64 * 1024,
      memoryBudgetBytes: sizes.applierMemoryBytes,
      extentMemory,
      batchMemory,
      staging,
      gatherMs: sizes.applyGatherMs,
      priority: core.io,
      ...hooks.applierCallbacks,
    },
    cursor,
    scan.end,
  );
  return { ingestEnd: scan.end, batchesScanned: scan.batches };
}
