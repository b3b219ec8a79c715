// The replication engine: everything between a checked stream item and a
// recoverable point, with no network. It owns the retention volume (lock,
// ingest log, undo logs, space), the catalog, the targets and the applier.
// This file opens and closes it and wires its parts; each job is a file of
// its own in this folder (startup, ingest, applying, targets, failover,
// reconfigure, status), and pruning is retention/pruner.ts.
import type { ApplyTimings } from '../apply/apply-timings';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { mkdirDurable } from '../durable-files';
import { MtagentError } from '../errors';
import type { StreamItem } from '../journal/items';
import { silentLogger, type Logger } from '../log';
import { IoPriority } from '../native';
import type { HistorySource, PairHistory, ReadHold } from '../recovery/history';
import { RetentionLock } from '../retention/lock';
import { Pruner, type PointHold } from '../retention/pruner';
import type { SpaceAccount } from '../retention/space';
import { WindowWatch, forecastWindow, type WindowReport } from '../retention/window-forecast';
import { Catalog, type ResyncWindowRow, type TagRow, type UndoSegmentRow } from '../store/catalog';
import { ApplyControl } from './applying';
import { EngineCore } from './core';
import { Failovers } from './failover';
import { historyOf, holdForReading } from './history-view';
import { IngestPath, type Accepted } from './ingest';
import { assertRetentionFits, resolveSizes, retentionNeeded, type EngineOptions, type EnginePairConfig, type EnginePolicy } from './options';
import { PairRegistry, type PairRuntime } from './pairs';
import { reconfigure, type ReconfigureResult } from './reconfigure';
import { openUndoLog, startUp, type StartupHooks } from './startup';
import { RATE_WINDOW_MS, pairStatus, rollRates, type PairStatus } from './status';
import { Targets } from './targets';

export type { EngineOptions, EnginePairConfig, EnginePolicy } from './options';
export type { PairStateName } from './pair-state';
export type { PairStatus } from './status';

/** How often the space on the retention volume is measured (ms). */
const SPACE_INTERVAL_MS = 2000;

export class Engine implements HistorySource {
  readonly log: Logger;
  readonly catalog: Catalog;
  /** The engine's disk scheduler: background I/O gives way to acknowledgements while they come first. */
  readonly io: IoPriority;
  /** Settles with the error the first time the engine stops on one it cannot pass; never otherwise. */
  readonly stoppedOnError: Promise<unknown>;
  readonly ingestDir: string;
  private readonly core: EngineCore;
  private readonly lock: RetentionLock;
  private readonly ingestPath: IngestPath;
  private readonly targets: Targets;
  private readonly pruner: Pruner<PairRuntime>;
  private readonly applying: ApplyControl;
  private readonly failovers: Failovers;
  private readonly hooks: StartupHooks;
  private readonly windowWatch: WindowWatch;
  private timers: NodeJS.Timeout[] = [];
  private started = false;

  private constructor(options: EngineOptions, lock: RetentionLock, catalog: Catalog) {
    const sizes = resolveSizes(options);
    this.log = options.logger ?? silentLogger();
    this.catalog = catalog;
    this.lock = lock;
    // Background I/O gives way only once start-up is done and while acknowledgements come first.
    this.io = new IoPriority(() => this.started && this.applying.acksComeFirst());
    const now = options.now ?? (() => Date.now() * 1000);
    const core = new EngineCore(
      { agentId: options.agentId, configPath: options.configPath ?? null, retentionDir: options.retentionDir, dataDir: options.dataDir },
      sizes,
      { pairs: options.pairs, policy: options.policy, maxBytes: options.maxBytes ?? null },
      this.log,
      catalog,
      new PairRegistry(now),
      this.io,
      now,
    );
    this.core = core;
    this.stoppedOnError = core.stoppedOnError;
    this.ingestDir = join(options.retentionDir, 'ingest');
    this.windowWatch = new WindowWatch(this.log, catalog);
    this.pruner = new Pruner({
      retentionDir: options.retentionDir,
      reserveBytes: sizes.reserveBytes,
      spaceWaitMs: sizes.spaceWaitMs,
      catalog,
      log: this.log,
      maxBytes: () => core.config.maxBytes,
      retentionSeconds: () => core.config.policy.retentionSeconds,
      pairs: () => core.pairs.all(),
      mayPrune: (p) => p.pins === 0 && p.state.failover === null,
      ingest: () => core.ingest ?? null,
      pokeApplier: () => core.applier?.poke(),
      closed: () => core.closed,
    });
    this.ingestPath = new IngestPath(core);
    this.targets = new Targets(core);
    this.applying = new ApplyControl(core, this.ingestPath, this.targets, this.pruner);
    this.hooks = {
      ingest: this.ingestPath,
      makeRoom: (bytes, mayWait) => this.pruner.makeRoom(bytes, mayWait),
      attachTarget: (pair) => this.targets.attach(pair),
      applierCallbacks: {
        onApplied: (p, r) => this.applying.onApplied(p, r),
        onPaused: (p, _err, news) => this.applying.onPaused(p, news),
        onResumed: (p) => this.applying.onResumed(p),
        onError: (err) => core.stopOn(err, 'the applier stopped on an error it cannot pass'),
        shouldYield: () => this.applying.applierShouldYield(),
        mayGather: () => this.applying.acksComeFirst(),
      },
    };
    this.failovers = new Failovers(core, {
      ingest: this.ingestPath,
      applying: this.applying,
      targets: this.targets,
      pin: (pairId) => this.pin(pairId),
      freshUndoLog: (pairId) => openUndoLog(core, this.hooks, pairId),
    });
  }

  /** Opens the retention volume, recovers after any crash, and starts applying. */
  static async open(options: EngineOptions): Promise<Engine> {
    const sizes = resolveSizes(options);
    assertRetentionFits(options.maxBytes ?? null, options.pairs.length, sizes);
    // Only init makes a retention folder: a path that is not there is a volume not mounted, or a typo.
    if (!existsSync(options.retentionDir)) {
      throw new MtagentError(
        'retention-missing',
        `retention path ${options.retentionDir} does not exist: mount the retention volume there, or run 'mtagent init --dir DIR' for a new installation`,
      );
    }
    mkdirDurable(join(options.retentionDir, 'ingest'));
    mkdirDurable(join(options.retentionDir, 'pairs'));
    const lock = await RetentionLock.acquire(options.retentionDir, { agentId: options.agentId, configPath: options.configPath ?? null });
    let catalog: Catalog | null = null;
    try {
      catalog = Catalog.open(join(options.dataDir, 'catalog.db'));
      const engine = new Engine(options, lock, catalog);
      await engine.start(options);
      return engine;
    } catch (err) {
      catalog?.close();
      await lock.release();
      throw err;
    }
  }

  private async start(options: EngineOptions): Promise<void> {
    const recovered = await startUp(this.core, options, this.hooks);
    await this.failovers.finishInterrupted();
    const space = await this.space();
    const needed = retentionNeeded(this.core.sizes, this.core.config.pairs.length);
    if (space.capacityBytes < needed) {
      this.log.error(
        { capacityBytes: space.capacityBytes, neededBytes: needed, pairs: this.core.config.pairs.length },
        'the retention volume is too small for these pairs: once it fills, pairs stop applying; give it more space',
      );
    }
    this.started = true;
    this.core.applier.poke();
    const every = (ms: number, fn: () => void): void => void this.timers.push(setInterval(fn, ms).unref());
    every(this.core.sizes.targetRetryMs, () => this.targets.retryPaused());
    every(RATE_WINDOW_MS, () => rollRates(this.core));
    every(SPACE_INTERVAL_MS, () => void this.window(null).then((w) => this.windowWatch.check(w), () => undefined));
    every(this.core.sizes.pruneIntervalMs, () => void this.pruneByTime().catch((err: unknown) => this.log.error({ err }, 'pruning failed')));
    this.log.info({ pairs: [...this.core.pairs.all()].map((p) => p.pairId), ...recovered }, 'engine recovered');
  }

  // ---- the ingest path ------------------------------------------------

  /** Configured pair ids. */
  pairIds(): string[] {
    return this.core.pairs.configuredIds();
  }

  openPair(pairId: string, diskBytes: number, sectorBytes: number): Promise<{ durableSeq: number; needsResync: boolean; session: number }> {
    return this.ingestPath.openPair(pairId, diskBytes, sectorBytes);
  }

  /** Checks and accepts items at once (see IngestPath.accept); `journal` then makes them durable. */
  accept(pairId: string, items: readonly StreamItem[], session?: number): Accepted {
    return this.ingestPath.accept(pairId, items, session);
  }

  journal(pairId: string, items: readonly StreamItem[], session?: number): Promise<number> {
    return this.ingestPath.journal(pairId, items, session);
  }

  /** Accepts and journals; the refusal, if any, is thrown once the items before it are durable. */
  append(pairId: string, items: readonly StreamItem[], session?: number): Promise<number> {
    return this.ingestPath.append(pairId, items, session);
  }

  /** The last seq accepted for a pair (durable or on its way). */
  acceptedSeq(pairId: string): number {
    return this.core.pairs.require(pairId).lastSeq;
  }

  targetAttached(pairId: string): boolean {
    return this.targets.attached(pairId);
  }

  targetProblem(pairId: string): string | null {
    return this.targets.problem(pairId);
  }

  // ---- applying ---------------------------------------------------------

  waitApplied(pairId: string, seq: number, timeoutMs = 60_000): Promise<void> {
    return this.applying.waitApplied(pairId, seq, timeoutMs);
  }

  settle(timeoutMs = 60_000): Promise<void> {
    return this.applying.settle(timeoutMs);
  }

  healthy(stuckMs = 20_000): boolean {
    return this.applying.healthy(stuckMs);
  }

  /** Write payload bytes applied, and before-image bytes captured, since open (write amplification). */
  get bytesApplied(): number {
    return this.applying.bytesApplied;
  }

  get undoBytesWritten(): number {
    return this.applying.undoBytesWritten;
  }

  /** Where the applier's time went since open. */
  get applyTimings(): ApplyTimings {
    return this.core.applier.timings;
  }

  /** Bytes written to the retention volume since open: ingest batches and undo batches. */
  retentionBytesWritten(): number {
    let undo = 0;
    for (const p of this.core.pairs.all()) undo += p.undo.bytesWritten;
    return this.core.ingest.bytesWritten + undo;
  }

  // ---- space and history --------------------------------------------------

  space(): Promise<SpaceAccount> {
    return this.pruner.space();
  }

  /** Whether the policy's window fits the volume at the pairs' peak churn (retention/window-forecast.ts); `heldSeconds` as the caller measured it. */
  async window(heldSeconds: number | null): Promise<WindowReport> {
    const space = await this.space();
    // An undo segment is closed when the next cycle's batch does not fit: on average half a cycle of it is left unused.
    const { undoSegmentBytes: segment, cycleBytes: cycle } = this.core.sizes;
    const fill = segment / Math.max(1, segment - cycle / 2);
    const pairs = [...this.core.pairs.all()].filter((p) => p.config !== null).map((p) => ({ churn: p.churn.churn(), undoBytesPerByte: p.churn.undoBytesPerByte * fill }));
    return forecastWindow({
      pairs,
      policySeconds: this.core.config.policy.retentionSeconds,
      fixedBytes: retentionNeeded(this.core.sizes, pairs.length),
      capacityBytes: space.capacityBytes,
      heldSeconds,
      shortenedForSpaceAt: this.catalog.lastEventTime('history-shortened'),
    });
  }

  pruneByTime(): Promise<number> {
    return this.pruner.pruneByTime();
  }

  /** The retention volume's folder. */
  get retentionDir(): string {
    return this.core.paths.retentionDir;
  }

  // ---- reconfiguration (SIGHUP) -----------------------------------------

  reconfigure(pairs: readonly EnginePairConfig[], policy: EnginePolicy, maxBytes: number | null): Promise<ReconfigureResult> {
    return reconfigure(this.core, this.targets, this.hooks, { pairs, policy, maxBytes });
  }

  // ---- the history recovery reads (HistorySource) ----------------------

  pin(pairId: string): () => void {
    const pair = this.core.pairs.require(pairId);
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
   * Keeps the state after `seq` recoverable (a test failover's point): history
   * is pruned only up to it. When the volume runs short of space and nothing
   * else is left to drop, the hold is revoked (`onRevoked`) instead of
   * replication waiting. Call the result to release it.
   */
  holdPoint(pairId: string, seq: number, o: { scratchBytes: () => number; onRevoked: (reason: string) => void }): () => void {
    const pair = this.core.pairs.require(pairId);
    const hold: PointHold = {
      seq,
      scratchBytes: o.scratchBytes,
      revoke: (reason) => {
        if (pair.holds.delete(hold)) o.onRevoked(reason);
      },
    };
    pair.holds.add(hold);
    return () => void pair.holds.delete(hold);
  }

  history(pairId: string): PairHistory {
    return historyOf(this.core.pairs.require(pairId));
  }

  tags(pairId: string): TagRow[] {
    return this.catalog.tags(pairId);
  }

  resyncWindows(pairId: string): ResyncWindowRow[] {
    return this.catalog.resyncWindows(pairId);
  }

  indexedSegments(pairId: string): UndoSegmentRow[] {
    return this.catalog.segments(pairId);
  }

  /** What `mtagent verify` reads while replication goes on (history-view.ts). */
  holdForReading(pairId: string): ReadHold {
    return holdForReading(this.core, this.core.pairs.require(pairId), this.pin(pairId));
  }

  /** A pair's group from the configuration. */
  groupOf(pairId: string): string | null {
    return this.core.pairs.get(pairId)?.config?.group ?? null;
  }

  // ---- failover, commit, purge ------------------------------------------

  failover(pairId: string, seq: number): Promise<void> {
    return this.failovers.failover(pairId, seq);
  }

  commit(pairId: string): Promise<void> {
    return this.failovers.commit(pairId);
  }

  purge(pairId: string): Promise<void> {
    return this.failovers.purge(pairId);
  }

  // ---- status -----------------------------------------------------------

  status(pairId: string): PairStatus {
    return pairStatus(this.core, this.core.pairs.require(pairId));
  }

  // ---- shutdown ----------------------------------------------------------

  /** Makes everything accepted durable, lets the applier finish its cycle, and closes. */
  async close(): Promise<void> {
    const core = this.core;
    if (core.closed) return;
    core.closed = true;
    for (const t of this.timers) clearInterval(t);
    await core.ingest.close();
    await core.applier.stop();
    this.applying.releaseWaiters();
    this.ingestPath.wakeAll();
    for (const pair of core.pairs.all()) {
      await pair.undo.close();
      await pair.target?.close();
    }
    this.catalog.flushDurably();
    this.catalog.close();
    await this.lock.release();
  }
}
