// What an engine is opened with, and every size and delay's default in one
// place. Operators set none of the sizes: the defaults are measured for a
// master target (docs/performance.md), and tests and the soak make them
// small (MTAGENT_TUNING) so a short run rolls, recycles and prunes.
import { MtagentError } from '../errors';
import type { Logger } from '../log';
import { minimumRetentionBytes } from '../retention/space';

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

/** The part of the configuration SIGHUP may change while the engine runs. */
export interface RunningConfig {
  readonly pairs: readonly EnginePairConfig[];
  readonly policy: EnginePolicy;
  /** Cap on the retention volume's use; null: its free space less the reserve. */
  readonly maxBytes: number | null;
}

export const ENGINE_DEFAULTS = {
  /** Free space on the retention volume the agent leaves alone (when maxBytes is null). */
  reserveBytes: 256 * 1024 * 1024,
  /** Size of each ingest log segment. */
  ingestSegmentBytes: 64 * 1024 * 1024,
  /** Size of each undo log segment: the unit history is dropped in. */
  undoSegmentBytes: 64 * 1024 * 1024,
  /** Largest ingest batch (one pwritev and one fdatasync). */
  maxBatchBytes: 8 * 1024 * 1024,
  /**
   * Log bytes the applier takes per cycle. Sized for peak RSS: 8 and 32 MiB
   * held 35-45 MiB more at full load for no more throughput.
   */
  cycleBytes: 4 * 1024 * 1024,
  /** Durable batches the applier keeps in memory; beyond it they are read back from the log. */
  applierMemoryBytes: 8 * 1024 * 1024,
  /** How often a paused pair's target is tried again (ms). */
  targetRetryMs: 2000,
  /** How often history past the retention window is dropped (ms). */
  pruneIntervalMs: 10_000,
  /** How long appends wait for room on the retention volume before `retention-full` (ms). */
  spaceWaitMs: 30_000,
  /**
   * An active pair further behind than this (durable, unapplied write bytes)
   * waits before accepting more, and is let go a step of the applier at a
   * time: ingest then runs at the rate the target takes.
   */
  maxApplyLagBytes: 256 * 1024 * 1024,
  /**
   * The same over all pairs: a pair behind at all waits while they are this
   * far behind together, so a failover to latest, or a stop, waits for a
   * bounded catch-up however many pairs stream.
   */
  maxTotalApplyLagBytes: 512 * 1024 * 1024,
  /** Less than a cycle of durable items waits this long (ms) for more before it is applied, while nobody needs it sooner. */
  applyGatherMs: 50,
} as const;

export type EngineSizes = { -readonly [K in keyof typeof ENGINE_DEFAULTS]: number };

export interface EngineOptions extends Partial<EngineSizes> {
  agentId: string;
  configPath?: string | null;
  retentionDir: string;
  dataDir: string;
  pairs: readonly EnginePairConfig[];
  policy: EnginePolicy;
  /** Cap on the retention volume's use; null: its free space less the reserve. */
  maxBytes?: number | null;
  /** Size of the applier's memory slabs; by default a cycle or a batch fits one (tests make it small to reuse memory often). */
  applierSlabBytes?: number;
  /** Fill the applier's memory with garbage when it is given back (tests: a read after release shows). */
  poisonFreedMemory?: boolean;
  logger?: Logger;
  /** Wall clock in µs (tests move it). */
  now?: () => number;
}

/** Every size and delay of `options`, defaults filled in, checked against each other. */
export function resolveSizes(options: EngineOptions): EngineSizes {
  const sizes = { ...ENGINE_DEFAULTS } as EngineSizes;
  for (const key of Object.keys(ENGINE_DEFAULTS) as Array<keyof EngineSizes>) {
    const v = options[key];
    if (v !== undefined) sizes[key] = v;
  }
  if (sizes.undoSegmentBytes < 2 * sizes.cycleBytes + 64 * 1024) {
    throw new MtagentError(
      'ERR_BAD_OPTIONS',
      `undoSegmentBytes (${sizes.undoSegmentBytes}) must be at least twice cycleBytes (${sizes.cycleBytes}) plus 64 KiB, so an apply step's undo batch fits a segment`,
    );
  }
  return sizes;
}

/** The least retention `pairCount` pairs need with these segment sizes (minimumRetentionBytes). */
export function retentionNeeded(sizes: EngineSizes, pairCount: number): number {
  return minimumRetentionBytes(pairCount, sizes.ingestSegmentBytes, sizes.undoSegmentBytes);
}

/** A configured retention.maxBytes must hold the least the pairs need. */
export function assertRetentionFits(maxBytes: number | null, pairCount: number, sizes: EngineSizes): void {
  if (maxBytes === null) return;
  const needed = retentionNeeded(sizes, pairCount);
  if (maxBytes < needed) {
    throw new MtagentError(
      'ERR_RETENTION_TOO_SMALL',
      `retention.maxBytes ${maxBytes} is below the ${needed} bytes ${pairCount} pair(s) need (two ingest segments of ${sizes.ingestSegmentBytes} bytes, and two undo segments of ${sizes.undoSegmentBytes} bytes per pair): raise it, or set it to null to use the volume's free space`,
    );
  }
}
