// What the engine's parts share: the sizes and the running configuration,
// the catalog, the pairs, the logs and the applier, the disk scheduler, and
// whether the engine still works. Each part of the engine is a file of its
// own (ingest.ts, applying.ts, targets.ts, failover.ts …); they meet here.
import type { Applier } from '../apply/applier';
import { MtagentError } from '../errors';
import type { IngestLog } from '../journal/ingest-log';
import type { Logger } from '../log';
import type { IoPriority } from '../native';
import type { Catalog } from '../store/catalog';
import type { EngineSizes, RunningConfig } from './options';
import type { PairRegistry, PairRuntime } from './pairs';

export interface EnginePaths {
  agentId: string;
  configPath: string | null;
  retentionDir: string;
  dataDir: string;
}

export class EngineCore {
  /** Replaced whole by a reload (SIGHUP), never changed in place. */
  config: RunningConfig;
  /** Set by start-up, before anything appends. */
  ingest!: IngestLog;
  applier!: Applier<PairRuntime>;
  closed = false;
  private fatalError: unknown = null;
  private reportFatal: (err: unknown) => void = () => undefined;
  /** Settles with the error the first time the engine stops on one it cannot pass; never otherwise. */
  readonly stoppedOnError: Promise<unknown> = new Promise((resolve) => (this.reportFatal = resolve));
  /** When the ingest log last finished a batch (Date.now()), for the watchdog. */
  lastBatchAt = Date.now();

  constructor(
    readonly paths: EnginePaths,
    readonly sizes: EngineSizes,
    config: RunningConfig,
    readonly log: Logger,
    readonly catalog: Catalog,
    readonly pairs: PairRegistry,
    readonly io: IoPriority,
    /** Wall clock in µs. */
    readonly now: () => number,
  ) {
    this.config = config;
  }

  get fatal(): unknown {
    return this.fatalError;
  }

  /** The engine stops on an error it cannot pass: logged once, and every later append refused. */
  stopOn(err: unknown, what: string): void {
    if (this.fatalError !== null) return;
    this.fatalError = err;
    this.log.fatal({ err }, what);
    this.reportFatal(err);
  }

  assertUsable(): void {
    if (this.closed) throw new MtagentError('ERR_CLOSED', 'the engine is closed');
    if (this.fatalError !== null) {
      throw new MtagentError('internal', `the engine stopped: ${this.fatalError instanceof Error ? this.fatalError.message : String(this.fatalError)}`);
    }
  }
}
