// The engine's pairs: what it holds of each one while it runs, and the
// registry that finds them.
import type { PointHold } from '../retention/pruner';
import type { ApplierPair } from '../apply/applier';
import type { StreamItem } from '../journal/items';
import type { ItemPoint, UndoLog } from '../journal/undo-log';
import { EngineError } from './errors';
import type { EnginePairConfig } from './options';
import { PairState } from './pair-state';
import { PairResyncCapture } from './resync-capture';
import type { ResyncWindowRow } from '../store/catalog';
import { ChurnMeter } from '../retention/churn';

export interface PairRuntime extends ApplierPair {
  config: EnginePairConfig | null;
  state: PairState;
  diskBytes: number | null;
  sectorBytes: number | null;
  /** Opened by a process server since start-up: items may be appended. */
  opened: boolean;
  /** The last item accepted (not yet necessarily durable), and its time. */
  lastSeq: number;
  lastTime: number;
  /** The newest durable item, and its source time. */
  durableSeq: number;
  durableTime: number | null;
  needsResync: boolean;
  inResync: boolean;
  /** The oldest state the undo log can roll back to. */
  oldest: ItemPoint;
  /** A commit dropped the history up to this seq (0: none): no recovery point at or before it. */
  historyFloor: number;
  resync: PairResyncCapture;
  /** Readers holding the history from being pruned. */
  pins: number;
  /** Points kept recoverable (test failovers): history is pruned only up to the oldest. */
  holds: Set<PointHold>;
  /** Bumped by every open: an older session's appends are refused as superseded. */
  session: number;
  /** Durable write bytes not yet applied. */
  lagBytes: number;
  rate: { since: number; bytes: number; perSecond: number };
  /** What the source writes per second (resync data left out). */
  churn: ChurnMeter;
  /**
   * Tags and resync markers applied but not yet in the catalog: its last
   * write failed (a full dataDir). Kept until a write takes them, so points
   * are not refused for want of them while the daemon runs.
   */
  unrecordedMarkers: StreamItem[];
}

export interface NewPair {
  pairId: string;
  config: EnginePairConfig | null;
  undo: UndoLog;
  oldest: ItemPoint;
  /** What the catalog remembers of the pair. */
  row: {
    appliedSeq: number;
    diskBytes: number | null;
    sectorBytes: number | null;
    needsResync: boolean;
    failover: 'rolling-back' | 'failed-over' | null;
    failoverSeq: number | null;
    historyFloor: number;
  };
  inResync: boolean;
  /** The pair's resync windows as the catalog has them. */
  windows: () => readonly ResyncWindowRow[];
}

export class PairRegistry {
  private readonly byId = new Map<string, PairRuntime>();

  /** `now`: the engine's clock (µs), which churn is measured on. */
  constructor(private readonly now: () => number) {}

  /** A pair as start-up or a reload finds it: its undo log read, its catalog row taken. */
  add(p: NewPair): PairRuntime {
    const last = p.undo.lastItem;
    const pair: PairRuntime = {
      pairId: p.pairId,
      config: p.config,
      state: new PairState(p.config !== null, p.row.failover, p.row.failoverSeq),
      appliedSeq: p.row.appliedSeq,
      appliedPoint: { seq: 0, time: 0 },
      undo: p.undo,
      target: null,
      diskBytes: p.row.diskBytes,
      sectorBytes: p.row.sectorBytes,
      opened: false,
      lastSeq: 0,
      lastTime: 0,
      // The logs say what is durable; the catalog adds only the floor a commit left.
      durableSeq: Math.max(p.row.historyFloor, last?.seq ?? 0),
      durableTime: last?.time ?? null,
      needsResync: p.row.needsResync,
      inResync: p.inResync,
      oldest: p.oldest,
      historyFloor: p.row.historyFloor,
      resync: new PairResyncCapture(() => pair, p.windows),
      pins: 0,
      holds: new Set(),
      session: 0,
      lagBytes: 0,
      rate: { since: Date.now(), bytes: 0, perSecond: 0 },
      churn: new ChurnMeter(this.now),
      unrecordedMarkers: [],
    };
    pair.resync.resume();
    this.byId.set(p.pairId, pair);
    return pair;
  }

  get(pairId: string): PairRuntime | undefined {
    return this.byId.get(pairId);
  }

  /** The pair, or `unknown-pair`. */
  require(pairId: string): PairRuntime {
    const pair = this.byId.get(pairId);
    if (!pair) throw new EngineError('unknown-pair', `pair ${pairId} is not known to this agent`, pairId);
    return pair;
  }

  /** A configured pair, or `unknown-pair` as a process server is told. */
  requireConfigured(pairId: string): PairRuntime & { config: EnginePairConfig } {
    const pair = this.byId.get(pairId);
    if (!pair || pair.config === null) throw new EngineError('unknown-pair', `pair ${pairId} is not configured on this agent`, pairId);
    return pair as PairRuntime & { config: EnginePairConfig };
  }

  has(pairId: string): boolean {
    return this.byId.has(pairId);
  }

  delete(pairId: string): void {
    this.byId.delete(pairId);
  }

  all(): IterableIterator<PairRuntime> {
    return this.byId.values();
  }

  /** Configured pair ids. */
  configuredIds(): string[] {
    return [...this.byId.values()].filter((p) => p.config !== null).map((p) => p.pairId);
  }

  /** The map the applier reads. */
  asMap(): ReadonlyMap<string, PairRuntime> {
    return this.byId;
  }
}
