// The operations behind the commands that need the agent's coordination
// (README, Commands): run against an engine, in the daemon (through the control
// socket) or in the command's own process when no daemon runs.
import { hostname } from 'node:os';
import type { Churn } from '../retention/churn';
import type { WindowReport } from '../retention/window-forecast';
import type { Engine, PairStatus } from '../engine/engine';
import { MtagentError } from '../errors';
import { packageVersion } from '../package-root';
import { PROTOCOL_VERSION } from '../protocol/constants';
import { rebuildGroup, resolveGroupPoint } from '../recovery/groups';
import { isoTime, oldestPoint, resolvePoint, timeOf, windowAt, type Timeline } from '../recovery/points';
import { catchUp, rebuild, timelineOf, type RebuildResult } from '../recovery/rebuild';
import { verifyPair, type VerifyResult } from '../recovery/verify';
import type { StartOptions, TestFailovers, TestInfo } from '../testfailover/manager';
import { discardTest } from '../testfailover/test-record';

export type Progress = (phase: string, done: number, total: number) => void;

export interface AgentContext {
  engine: Engine;
  agentId: string;
  startedAt: Date;
  /** Process servers connected now (the daemon's), empty offline. */
  processServers: () => Array<{ id: string; address: string; connectedSince: string }>;
  /** Heartbeat state (the daemon's), null offline. */
  heartbeat: () => HeartbeatState | null;
  /** Test failovers (the daemon's), null offline. */
  tests: TestFailovers | null;
}

export interface HeartbeatState {
  lastSuccess: string | null;
  lastFailure: string | null;
  lastError: string | null;
  consecutiveFailures: number;
  failures: number;
}

export interface PairRow {
  pair: string;
  group: string | null;
  state: PairStatus['state'];
  durableSeq: number;
  appliedSeq: number;
  oldestPoint: string | null;
  latestPoint: string | null;
  latestAppPoint: string | null;
  /** How much history the pair holds: its latest point minus its oldest, seconds; null without both. */
  historySeconds: number | null;
  /** The source's writes per second over the last minute and hour, and the peak hour of the last day (resync data left out). */
  churn: Churn;
  rpoSeconds: number | null;
  rpoHealth: PairStatus['rpoHealth'];
  journalBytes: number;
  ingestBytesPerSecond: number;
  lastError: string | null;
  /** Why the pair is not protected, and what it waits for; null when it is. */
  why: string | null;
  /** The test failover running, null when none. */
  testFailover: TestInfo | null;
}

export interface StatusReport {
  agentId: string;
  hostname: string;
  version: string;
  protocol: number;
  time: string;
  uptimeSeconds: number;
  daemon: boolean;
  retention: { path: string; capacityBytes: number; freeBytes: number; usedBytes: number; healthy: boolean; problems: string[] };
  /** Times history was shortened for space since the catalog began. */
  historyShortened: number;
  processServers: Array<{ id: string; address: string; connectedSince: string }>;
  heartbeat: HeartbeatState | null;
  pairs: PairRow[];
  /** Whether the policy's window fits the retention volume at the peak churn. */
  window: WindowReport;
  events: Array<{ time: string; pair: string | null; kind: string; message: string }>;
}

/** Source times of points by pair: a seq's time never changes, and reading it may read an undo segment. */
const pointTimes = new Map<string, { seq: number; time: number | null }>();

async function pointTime(t: Timeline, seq: number, slot: string): Promise<number | null> {
  if (seq === t.oldest.seq) return t.oldest.time > 0 ? t.oldest.time : null;
  const end = t.windows.find((w) => w.endSeq === seq && w.endTime !== null);
  if (end) return end.endTime;
  const key = `${t.pairId}\0${slot}`;
  const known = pointTimes.get(key);
  if (known && known.seq === seq) return known.time;
  const time = await timeOf(t, seq);
  pointTimes.set(key, { seq, time });
  return time;
}

async function pairRow(engine: Engine, s: PairStatus, tests: TestFailovers | null): Promise<PairRow> {
  // The points as `mtagent points` gives them: the oldest recovery point (not the
  // undo log's first state, which an initial copy leaves unrecoverable), and the
  // state the target holds (a failed-over pair's is its failover point).
  const t = timelineOf(engine, s.pair);
  const oldestSeq = oldestPoint(t);
  const oldestTime = oldestSeq === null ? null : await pointTime(t, oldestSeq, 'oldest');
  const latestTime = t.latestSeq === s.appliedSeq && s.latestTime !== null ? s.latestTime : t.latestSeq > 0 ? await pointTime(t, t.latestSeq, 'latest') : null;
  const tags = t.tags;
  let app: (typeof tags)[number] | null = null;
  for (let i = tags.length - 1; i >= 0; i--) {
    const x = tags[i];
    if (x && x.kind === 'app' && oldestSeq !== null && x.seq >= oldestSeq && x.seq <= t.latestSeq && windowAt(t.windows, x.seq) === null) {
      app = x;
      break;
    }
  }
  return {
    pair: s.pair,
    group: s.group,
    state: s.state,
    durableSeq: s.durableSeq,
    appliedSeq: t.latestSeq,
    oldestPoint: oldestSeq === null ? null : isoTime(oldestTime),
    latestPoint: isoTime(latestTime),
    latestAppPoint: app ? isoTime(app.time) : null,
    historySeconds: oldestTime !== null && latestTime !== null && oldestSeq !== null ? Math.max(0, Math.round((latestTime - oldestTime) / 1e4) / 100) : null,
    churn: {
      lastMinuteBytesPerSecond: Math.round(s.churn.lastMinuteBytesPerSecond),
      lastHourBytesPerSecond: Math.round(s.churn.lastHourBytesPerSecond),
      peakHourBytesPerSecond: Math.round(s.churn.peakHourBytesPerSecond),
    },
    rpoSeconds: s.rpoSeconds === null ? null : Math.round(s.rpoSeconds * 10) / 10,
    rpoHealth: s.rpoHealth,
    journalBytes: s.journalBytes,
    ingestBytesPerSecond: Math.round(s.ingestBytesPerSecond),
    lastError: s.lastError,
    why: s.why,
    testFailover: tests?.of(s.pair) ?? null,
  };
}

export async function status(ctx: AgentContext, daemon: boolean): Promise<StatusReport> {
  const { engine } = ctx;
  const space = await engine.space();
  const problems: string[] = [];
  if (space.availableBytes < 0.05 * space.capacityBytes) problems.push(`retention volume nearly full: ${space.availableBytes} of ${space.capacityBytes} bytes left`);
  const rows = engine.pairIds().concat(engine.catalog.pairs().map((p) => p.pairId).filter((id) => !engine.pairIds().includes(id)));
  const configured = new Set(engine.pairIds());
  const pairs = await Promise.all(rows.filter((id) => { try { engine.status(id); return true; } catch { return false; } }).map((id) => pairRow(engine, engine.status(id), ctx.tests)));
  const held = pairs.filter((p) => configured.has(p.pair) && p.historySeconds !== null).map((p) => p.historySeconds as number);
  const window = await engine.window(held.length > 0 ? Math.min(...held) : null);
  return {
    agentId: ctx.agentId,
    hostname: hostname(),
    version: packageVersion,
    protocol: PROTOCOL_VERSION,
    time: new Date().toISOString(),
    uptimeSeconds: Math.round((Date.now() - ctx.startedAt.getTime()) / 1000),
    daemon,
    retention: {
      path: engine.retentionDir,
      capacityBytes: space.capacityBytes,
      freeBytes: space.availableBytes,
      usedBytes: space.usedBytes,
      healthy: problems.length === 0,
      problems,
    },
    historyShortened: engine.catalog.eventCount('history-shortened'),
    processServers: ctx.processServers(),
    heartbeat: ctx.heartbeat(),
    pairs,
    window,
    events: engine.catalog.events(20).map((e) => ({ time: e.time, pair: e.pairId, kind: e.kind, message: e.message })),
  };
}

export interface PointsReport {
  pair: string;
  /** The oldest recovery point; null while there is none (an initial copy under way). */
  oldest: { seq: number; time: string | null } | null;
  latest: { seq: number; time: string | null };
  /** Items durable but not on the target while applying is paused: not recoverable until it resumes. */
  notApplied: { fromSeq: number; toSeq: number; reason: string } | null;
  resyncWindows: Array<{ startSeq: number; startTime: string | null; endSeq: number | null; endTime: string | null }>;
  tags: Array<{ seq: number; time: string | null; kind: string; name: string; group: string | null }>;
}

export async function points(ctx: AgentContext, pairId: string): Promise<PointsReport> {
  const { engine } = ctx;
  await catchUp(engine, pairId).catch(() => undefined);
  const t = timelineOf(engine, pairId);
  const oldest = oldestPoint(t);
  return {
    pair: pairId,
    oldest: oldest === null ? null : { seq: oldest, time: isoTime(await timeOf(t, oldest)) },
    latest: { seq: t.latestSeq, time: isoTime(await timeOf(t, t.latestSeq)) },
    notApplied: t.applyPausedBy !== null && t.durableSeq > t.latestSeq ? { fromSeq: t.latestSeq + 1, toSeq: t.durableSeq, reason: t.applyPausedBy } : null,
    resyncWindows: t.windows.map((w) => ({ startSeq: w.startSeq, startTime: isoTime(w.startTime), endSeq: w.endSeq, endTime: isoTime(w.endTime) })),
    tags: t.tags.map((x) => ({ seq: x.seq, time: isoTime(x.time), kind: x.kind, name: x.name, group: x.group })),
  };
}

export interface RecoverResult {
  pair: string;
  seq: number;
  time: string | null;
  path: string;
  sha256: string;
  sizeBytes: number;
}

function recoverRow(r: RebuildResult): RecoverResult {
  return { pair: r.pairId, seq: r.seq, time: isoTime(r.time), path: r.path, sha256: r.sha256, sizeBytes: r.sizeBytes };
}

export async function recover(ctx: AgentContext, pairId: string, at: string, out: string, force: boolean, progress?: Progress, signal?: AbortSignal): Promise<RecoverResult> {
  return recoverRow(await rebuild(ctx.engine, pairId, at, out, { force, onProgress: progress, ...(signal ? { signal } : {}) }));
}

export async function recoverGroup(ctx: AgentContext, group: string, at: string, outDir: string, force: boolean, progress?: Progress, signal?: AbortSignal): Promise<RecoverResult[]> {
  return (await rebuildGroup(ctx.engine, group, at, outDir, { force, onProgress: progress, ...(signal ? { signal } : {}) })).map(recoverRow);
}

/** A test of the pair ends before its history changes under it. */
async function endTest(ctx: AgentContext, pairId: string, why: string): Promise<void> {
  if (ctx.tests) await ctx.tests.endFor(pairId, why);
  else discardTest(ctx.engine.retentionDir, pairId);
}

export async function failover(ctx: AgentContext, pairId: string, at: string): Promise<{ pair: string; seq: number; time: string | null }> {
  const { engine } = ctx;
  engine.status(pairId);
  await endTest(ctx, pairId, 'the pair is failed over');
  await catchUp(engine, pairId);
  const unpin = engine.pin(pairId);
  try {
    const point = await resolvePoint(timelineOf(engine, pairId), at);
    await engine.failover(pairId, point.seq);
    return { pair: pairId, seq: point.seq, time: isoTime(point.time) };
  } finally {
    unpin();
  }
}

export async function commit(ctx: AgentContext, pairId: string): Promise<{ pair: string }> {
  await endTest(ctx, pairId, 'the pair is committed');
  await ctx.engine.commit(pairId);
  return { pair: pairId };
}

export async function verify(ctx: AgentContext, pairId: string, progress?: Progress, signal?: AbortSignal): Promise<VerifyResult> {
  return verifyPair(ctx.engine, pairId, { ...(signal ? { signal } : {}), ...(progress ? { onProgress: progress } : {}) });
}

export async function purge(ctx: AgentContext, pairId: string): Promise<{ pair: string }> {
  await endTest(ctx, pairId, 'the pair is purged');
  await ctx.engine.purge(pairId);
  return { pair: pairId };
}

export async function groupPoint(ctx: AgentContext, group: string, at: string): Promise<Array<{ pair: string; seq: number; time: string | null }>> {
  return (await resolveGroupPoint(ctx.engine, group, at)).map((p) => ({ pair: p.pairId, seq: p.seq, time: isoTime(p.time) }));
}

function testsOf(ctx: AgentContext): TestFailovers {
  if (ctx.tests === null) {
    throw new MtagentError('daemon-not-running', "test-failover is served by the running daemon, and none runs: start it (systemctl start mtagent, or 'mtagent run'), then try again");
  }
  return ctx.tests;
}

function startOptions(args: Record<string, unknown>): StartOptions {
  const n = args.scratchBytes;
  if (n !== undefined && n !== null && (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0)) throw new MtagentError('bad-usage', 'scratchBytes must be a whole number of bytes');
  return {
    listen: typeof args.listen === 'string' && args.listen.length > 0 ? args.listen : null,
    readOnly: args.readOnly === true,
    scratchBytes: typeof n === 'number' ? n : null,
  };
}

export const OPERATIONS = ['status', 'points', 'recover', 'recover-group', 'failover', 'commit', 'verify', 'purge', 'test-failover-start', 'test-failover-stop', 'test-failover-list'] as const;
export type OperationName = (typeof OPERATIONS)[number];

/**
 * Runs one named operation with JSON arguments: the control socket's
 * dispatcher. `signal` cancels what can be cancelled (recover, verify).
 */
export async function runOperation(ctx: AgentContext, daemon: boolean, name: string, args: Record<string, unknown>, progress?: Progress, signal?: AbortSignal): Promise<unknown> {
  const str = (k: string): string => {
    const v = args[k];
    if (typeof v !== 'string' || v.length === 0) throw new MtagentError('bad-usage', `${name}: ${k} is required`);
    return v;
  };
  switch (name) {
    case 'status':
      return status(ctx, daemon);
    case 'points':
      return points(ctx, str('pair'));
    case 'recover':
      return recover(ctx, str('pair'), str('at'), str('out'), args.force === true, progress, signal);
    case 'recover-group':
      return recoverGroup(ctx, str('group'), str('at'), str('out'), args.force === true, progress, signal);
    case 'failover':
      return failover(ctx, str('pair'), str('at'));
    case 'commit':
      return commit(ctx, str('pair'));
    case 'verify':
      return verify(ctx, str('pair'), progress, signal);
    case 'purge':
      return purge(ctx, str('pair'));
    case 'test-failover-start':
      if (typeof args.group === 'string') return testsOf(ctx).startGroup(str('group'), str('at'), startOptions(args));
      return testsOf(ctx).start(str('pair'), str('at'), startOptions(args));
    case 'test-failover-stop':
      if (typeof args.group === 'string') return testsOf(ctx).stopGroup(str('group'));
      return testsOf(ctx).stop(str('pair'));
    case 'test-failover-list':
      return testsOf(ctx).list();
    default:
      throw new MtagentError('bad-usage', `unknown operation ${name}`);
  }
}
