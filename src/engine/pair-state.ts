// A pair's state as one machine: whether its items are applied, where a
// paused pair picks up, whether it is configured, failed over or being
// failed over, and the error that stands. Every change goes through a
// transition here; the state name that status, the heartbeat and the
// metrics report is derived from it in one place.
import { comparePositions, type LogPosition } from '../journal/segment-log';

/**
 * - applying: the applier takes the pair's items as they become durable;
 * - paused: they are journaled, not applied (target gone, a write failed,
 *   unconfigured, failed over); `resumeFrom` is where applying picks up;
 * - retrying: paused, and the applier is to try catching up at its next turn.
 */
export type ApplyMode = 'applying' | 'paused' | 'retrying';

/**
 * - replicating: items are taken;
 * - failing-over: a failover waits for everything durable to be applied; new items are refused;
 * - rolling-back: the target is being rolled back to `failoverSeq` (finished at start-up after a crash);
 * - failed-over: the target holds `failoverSeq`; nothing is taken until a commit.
 */
export type Lifecycle = 'replicating' | 'failing-over' | 'rolling-back' | 'failed-over';

export type PairStateName = 'unprotected' | 'resyncing' | 'protected' | 'target-unavailable' | 'failed-over' | 'error';

/** What the name depends on besides the machine: facts the rest of the pair holds. */
export interface PairFacts {
  targetOpen: boolean;
  inResync: boolean;
  needsResync: boolean;
  durableSeq: number;
}

export const UNCONFIGURED = 'not in the configuration: retention kept until `mtagent pair purge`';

export class PairState {
  private applyMode: ApplyMode;
  private life: Lifecycle;
  private failoverAt: number | null;
  private resumeAt: LogPosition | null = null;
  private error: string | null;
  private standingAlert: string | null = null;
  private isConfigured: boolean;

  constructor(configured: boolean, failover: 'rolling-back' | 'failed-over' | null = null, failoverSeq: number | null = null) {
    this.isConfigured = configured;
    this.life = failover ?? 'replicating';
    this.failoverAt = failover === null ? null : failoverSeq;
    this.applyMode = configured && failover === null ? 'applying' : 'paused';
    this.error = configured ? null : UNCONFIGURED;
  }

  // ---- what it is -------------------------------------------------------

  get mode(): ApplyMode {
    return this.applyMode;
  }

  get lifecycle(): Lifecycle {
    return this.life;
  }

  /** Items are journaled and not applied. */
  get paused(): boolean {
    return this.applyMode !== 'applying';
  }

  /** The applier is to try catching the pair up. */
  get wantsResume(): boolean {
    return this.applyMode === 'retrying';
  }

  /** Where applying picks up after a pause; null when nothing of the pair was skipped. */
  get resumeFrom(): LogPosition | null {
    return this.resumeAt;
  }

  get configured(): boolean {
    return this.isConfigured;
  }

  /** Failed over, or being failed over: no opens and no items until a commit. */
  get refusesItems(): boolean {
    return this.life !== 'replicating';
  }

  /** The failover the catalog records: null, rolling back, or failed over. */
  get failover(): 'rolling-back' | 'failed-over' | null {
    return this.life === 'rolling-back' || this.life === 'failed-over' ? this.life : null;
  }

  get failoverSeq(): number | null {
    return this.failoverAt;
  }

  /** The error that stands: set when applying stops, cleared once a retry has caught up. */
  get lastError(): string | null {
    return this.error;
  }

  /** A problem that stays until an operator acts (acknowledged items missing). */
  get alert(): string | null {
    return this.standingAlert;
  }

  name(f: PairFacts): PairStateName {
    if (this.failover !== null) return 'failed-over';
    if (!this.isConfigured || this.standingAlert !== null) return 'error';
    if (!f.targetOpen) return 'target-unavailable';
    if (this.paused) return 'error';
    if (f.inResync) return 'resyncing';
    if (f.durableSeq === 0 || f.needsResync) return 'unprotected';
    return 'protected';
  }

  // ---- the target and the applier ----------------------------------------

  /** The target opened: a configured pair not failed over applies again. */
  targetOpened(): void {
    if (this.failover !== null || !this.isConfigured) return;
    this.applyMode = 'applying';
    this.error = null;
  }

  /**
   * Applying stopped (the target could not be opened, a step failed). Returns
   * whether the error is news: the same failure again, at each retry while a
   * disk is away, is not. An unconfigured pair closed its target on purpose:
   * what failed on it then is not recorded.
   */
  stopped(message: string): boolean {
    this.applyMode = 'paused';
    if (!this.isConfigured) return false;
    const news = this.error !== message;
    this.error = message;
    return news;
  }

  /** The applier passed the pair's items from `at` on while it was paused. */
  skippedFrom(at: LogPosition): void {
    if (this.resumeAt === null || comparePositions(at, this.resumeAt) < 0) this.resumeAt = at;
  }

  /** Where a paused pair picks up, as start-up finds it in the ingest log. */
  resumeAtStart(at: LogPosition): void {
    this.resumeAt = at;
  }

  /**
   * The pair may try again (its target is open): the applier catches it up
   * from where it left off at its next turn, and it counts as paused until then.
   */
  retry(): void {
    if (this.isConfigured && this.failover === null) this.applyMode = 'retrying';
  }

  /** The applier takes a retrying pair up; a failure on the way stops it again. */
  resumeBegins(): void {
    if (this.applyMode === 'retrying') this.applyMode = 'applying';
  }

  /** The applier caught the pair up to its cursor, or stopped again at `left` (where to pick up next time). */
  resumeEnds(left: LogPosition | null): void {
    this.resumeAt = left;
  }

  /** A retry caught up: the error no longer stands. */
  caughtUp(): void {
    this.error = null;
  }

  /** Acknowledged items are missing: said until an operator acts. */
  raiseAlert(message: string): void {
    this.standingAlert = message;
  }

  // ---- configuration ---------------------------------------------------

  /** Taken out of the configuration: nothing is applied; retention stays until purged. */
  unconfigure(): void {
    this.isConfigured = false;
    this.applyMode = 'paused';
    this.error = UNCONFIGURED;
  }

  /** In the configuration again: it applies once its target opens. */
  reconfigure(): void {
    this.isConfigured = true;
    this.error = null;
  }

  // ---- failover --------------------------------------------------------

  /** A failover begins: items are refused from here, while what is durable is applied. */
  failoverBegins(): void {
    this.life = 'failing-over';
  }

  /** The failover could not drain (a timeout): the pair replicates again. */
  failoverAbandoned(): void {
    if (this.life === 'failing-over') this.life = 'replicating';
  }

  /** Everything durable is applied: the target is rolled back to `seq` from here. */
  rollingBack(seq: number): void {
    this.life = 'rolling-back';
    this.failoverAt = seq;
    this.applyMode = 'paused';
  }

  /** The target holds the failover point. */
  failedOver(): void {
    this.life = 'failed-over';
  }

  /** Committed: history dropped; it replicates again (after a resync), applying if its target is open. */
  committed(targetOpen: boolean): void {
    this.life = 'replicating';
    this.failoverAt = null;
    this.resumeAt = null;
    this.applyMode = targetOpen && this.isConfigured ? 'applying' : 'paused';
  }
}
