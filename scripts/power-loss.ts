// npm run test:powerloss -- [--points 10] [--seconds 14] [--seed 1] [--dir powerloss-tmp] [--keep]
//                           [--verbose] [--mutant ack-before-flush]
//
// Power loss, tested from outside in the manner of xfstests' dm-log-writes.
// The whole installation (config, dataDir, retention, targets) goes on ext4
// on a loop device over a FUSE file that logs every write and every flush.
// `mtagent init` makes it, the daemon runs, a simulator streams into two
// pairs (an initial copy, then mixed writes with app tags) and the daemon is
// killed. Then the device is rebuilt as a power cut could have left it, at
// sampled flush marks, in three variants:
//   A  as it was at the mark;
//   B  plus a random subset of the writes that followed it;
//   C  as B, one of them torn at a sector boundary.
// For each: e2fsck, mount, start the agent, and check that every item
// acknowledged before the next flush completed is durable, that `verify`
// passes, that the latest acknowledged point and an app tag rebuild exactly
// as the simulator's model says, and that the agent takes a stream up again
// and comes back from one more restart. The first point is the last mark
// before `init` returned: its installation must be whole.
//
// --mutant ack-before-flush starts the daemon with its log writes made
// without their flush: the run must then fail. Exit 1 on any failure.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, mkdirSync, openSync, closeSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { freePort } from './free-port';
import { LogKind, MountedImage, ImageWriter, LoggedDisk, buildLogWrites, cleanUpAfter, checkFilesystem, copyImage, missingPrerequisites, readLog, type LogEntry, type Replayed } from './power-loss/logged-disk';
import { writeFileDurable } from '../src/durable-files';
import { packageRoot } from '../src/package-root';
import { readPassphrase, loadConfig } from '../src/config/load';
import { DAEMON_NODE_FLAGS } from '../src/server/node-flags';
import { Simulator, type SimulateOptions } from '../src/simulator/simulator';
import type { SourceModel } from '../src/simulator/model';
import { checkPoint, oldestRetainedSeq } from '../src/simulator/verify';
import { rng } from '../src/simulator/workload';

const MiB = 1024 * 1024;
const MAIN = join(packageRoot, 'dist', 'src', 'cli', 'main.js');
const MUTANT_ACK_BEFORE_FLUSH = join(packageRoot, 'dist', 'scripts', 'power-loss', 'ack-before-flush.js');
const DEVICE_BYTES = 640 * MiB;
const PAIRS = [
  { id: 'pl-a', diskBytes: 24 * MiB },
  { id: 'pl-b', diskBytes: 16 * MiB },
];
/** Small segments and a short window, so a short run rolls, recycles and prunes both logs. */
const TUNING = JSON.stringify({ ingestSegmentBytes: 4 * MiB, undoSegmentBytes: 2 * MiB, maxBatchBytes: MiB, cycleBytes: 512 * 1024, reserveBytes: 16 * MiB, pruneIntervalMs: 1000, targetRetryMs: 500 });
const RETENTION_SECONDS = 4;
const RATE_BYTES_PER_SECOND = 8 * MiB;

export type Variant = 'A' | 'B' | 'C';

export interface PowerLossOptions {
  /** Crash points in all, the one right after init included. */
  points: number;
  /** How long the simulator streams before the daemon is killed. */
  seconds: number;
  seed: number;
  dir: string;
  keep: boolean;
  mutant: 'ack-before-flush' | null;
  /** Log every check of every point, not only the verdict. */
  verbose: boolean;
  log: (line: string) => void;
}

export interface PointResult {
  /** Index of the flush in the device log. */
  mark: number;
  variant: Variant;
  /** Seconds since the daemon started (negative: before, during init). */
  at: number;
  /** What was checked, one line each. */
  checks: string[];
  failures: string[];
  /** What the agent's start-up logged it put right (torn tails, segments past the end, a catalog behind). */
  repairs: string[];
}

interface Ack {
  seq: number;
  ns: bigint;
}

interface Point {
  mark: number;
  variant: Variant;
  init: boolean;
}

function now(): bigint {
  return process.hrtime.bigint();
}

/** Runs the CLI; resolves with its exit code and output. */
function cli(args: string[], timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The daemon of one installation, spawned as `mtagent run`. */
class Daemon {
  private proc: ChildProcess | null = null;
  output = '';

  constructor(
    private readonly configPath: string,
    private readonly mutant: PowerLossOptions['mutant'],
  ) {}

  async start(): Promise<void> {
    const preload = this.mutant === 'ack-before-flush' ? ['--require', MUTANT_ACK_BEFORE_FLUSH] : [];
    const proc = spawn(process.execPath, [...DAEMON_NODE_FLAGS, ...preload, MAIN, 'run', '--config', this.configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, MTAGENT_TUNING: TUNING },
    });
    this.proc = proc;
    this.output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the agent did not start in 60 s: ${this.tail()}`)), 60_000);
      proc.stdout?.on('data', (d: Buffer) => {
        if (this.output.length < 4 * MiB) this.output += d.toString();
        if (this.output.includes('"mtagent running"')) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the agent exited ${code} at start: ${this.tail()}`));
      });
    });
    proc.removeAllListeners('exit');
  }

  /** The last lines it wrote, for a failure message. */
  tail(lines = 6): string {
    return this.output.trim().split('\n').slice(-lines).join('\n');
  }

  async stop(signal: NodeJS.Signals): Promise<number | null> {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null) return p?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    p.kill(signal);
    return exited;
  }
}

function simulatorOptions(configPath: string, seconds: number, seed: number, onAck?: SimulateOptions['onAck']): SimulateOptions {
  const config = loadConfig(configPath);
  return {
    client: { url: `wss://127.0.0.1:${config.listen.port}`, passphrase: readPassphrase(config), processServerId: 'ps-powerloss', ca: readFileSync(config.tls.cert) },
    pairs: PAIRS,
    workload: 'mixed',
    ioBytes: 64 * 1024,
    rateBytesPerSecond: RATE_BYTES_PER_SECOND,
    durationSeconds: seconds,
    items: null,
    tagEvery: 20,
    group: 'pl',
    tickSeconds: 1,
    seed,
    messageBytes: 256 * 1024,
    reconnect: true,
    resyncWhenAsked: true,
    ...(onAck ? { onAck } : {}),
  };
}

/**
 * Picks the crash points: the last mark before init returned, then marks
 * spread over the stream, the last one included. A C point is drawn, where
 * its stretch of the stream has one, from the marks after which a write
 * opens an undo segment: a torn first batch of a fresh segment is the cut a
 * log's reader and writer must agree on.
 */
function choosePoints(
  entries: readonly LogEntry[],
  times: { initDone: bigint; started: bigint; killed: bigint },
  count: number,
  random: () => number,
  opensSegment: (w: LogEntry) => boolean,
): Point[] {
  const { initDone, started, killed } = times;
  const flushes = entries.flatMap((e, i) => (e.kind === LogKind.Flush ? [i] : []));
  const initMark = flushes.filter((i) => (entries[i] as LogEntry).ns < initDone).pop();
  const streamMarks = flushes.filter((i) => (entries[i] as LogEntry).ns > started && (entries[i] as LogEntry).ns < killed);
  if (initMark === undefined) throw new Error('the device log has no flush before init returned');
  if (streamMarks.length === 0) throw new Error('the device log has no flush while the stream ran');
  const variants: Variant[] = ['A', 'B', 'C'];
  const out: Point[] = [{ mark: initMark, variant: 'A', init: true }];
  const spread = Math.max(1, count - 1);
  for (let k = 0; k < spread; k++) {
    const last = k === spread - 1;
    const from = Math.floor((k / spread) * streamMarks.length);
    const to = Math.max(from + 1, Math.floor(((k + 1) / spread) * streamMarks.length));
    const variant = variants[k % 3] as Variant;
    const stretch = streamMarks.slice(from, to);
    const rolls = variant === 'C' ? stretch.filter((m) => unflushedAfter(entries, m).writes.some(opensSegment)) : [];
    const pool = rolls.length > 0 ? rolls : stretch;
    const mark = last ? (streamMarks.at(-1) as number) : (pool[Math.floor(random() * pool.length)] as number);
    out.push({ mark, variant, init: false });
  }
  return out.sort((a, b) => a.mark - b.mark);
}

/** The writes (and discards) after a flush mark and before the next flush: what a power cut may keep any of. */
function unflushedAfter(entries: readonly LogEntry[], mark: number): { writes: LogEntry[]; nextFlush: LogEntry | null } {
  const writes: LogEntry[] = [];
  for (let i = mark + 1; i < entries.length; i++) {
    const e = entries[i] as LogEntry;
    if (e.kind === LogKind.Flush) return { writes, nextFlush: e };
    writes.push(e);
  }
  return { writes, nextFlush: null };
}

/**
 * What variant B or C adds to the state at the mark. C tears, by preference,
 * a write that opens an undo segment, else one that opens a log batch (the
 * agent's own record header at its start): the tear that keeps a batch's
 * header and loses the rest is the one a log reader must tell from damage.
 */
function extrasFor(variant: Variant, writes: readonly LogEntry[], random: () => number, opens: (w: LogEntry) => 'batch' | 'segment' | null): { replayed: Replayed[]; note: string } {
  if (variant === 'A' || writes.length === 0) return { replayed: [], note: variant === 'A' ? 'as at the flush' : `no write followed the flush (as A)` };
  const replayed: Replayed[] = writes.filter(() => random() < 0.5).map((entry) => ({ entry }));
  if (variant === 'B') return { replayed, note: `plus ${replayed.length} of the ${writes.length} writes after it` };
  const tearable = writes.filter((w) => w.kind === LogKind.Write && w.length >= 1024);
  const segmentHeads = tearable.filter((w) => opens(w) === 'segment');
  const batchHeads = tearable.filter((w) => opens(w) !== null);
  const pool = segmentHeads.length > 0 ? segmentHeads : batchHeads.length > 0 && random() < 0.75 ? batchHeads : tearable;
  const victim = pool[Math.floor(random() * pool.length)];
  if (victim === undefined) return { replayed, note: `plus ${replayed.length} of the ${writes.length} writes after it (none long enough to tear)` };
  const sectors = 1 + Math.floor(random() * (victim.length / 512 - 1));
  const kept = replayed.filter((r) => r.entry !== victim);
  kept.push({ entry: victim, sectors });
  return { replayed: kept, note: `plus ${kept.length - 1} of the ${writes.length} writes after it and one${opens(victim) === 'segment' ? ' opening an undo segment' : opens(victim) === 'batch' ? ' opening a log batch' : ''} torn after ${sectors} of its ${victim.length / 512} sectors` };
}

interface Recording {
  entries: LogEntry[];
  acks: Map<string, Ack[]>;
  models: Map<string, SourceModel>;
  initDone: bigint;
  started: bigint;
  killed: bigint;
}

/** Makes the installation on the logged device, streams into it, and kills the daemon. */
async function record(o: PowerLossOptions, disk: LoggedDisk, home: string): Promise<Recording> {
  const port = await freePort();
  const init = await cli(['init', '--dir', home, '--port', String(port), '--no-metrics']);
  const initDone = now();
  if (init.code !== 0) throw new Error(`mtagent init failed: ${init.stderr.trim()}`);
  const configPath = join(home, 'agent.yaml');
  const config = readFileSync(configPath, 'utf8')
    .replace(/retentionSeconds: \d+/, `retentionSeconds: ${RETENTION_SECONDS}`)
    .replace(/\npairs:[\s\S]*$/, `\npairs:\n${PAIRS.map((p) => `  - { id: ${p.id}, target: datastore/${p.id}.img, sizeBytes: ${p.diskBytes}, group: pl }`).join('\n')}\n`);
  writeFileDurable(configPath, config, 0o640);
  const daemon = new Daemon(configPath, o.mutant);
  await daemon.start();
  const started = now();
  o.log(`daemon running on the logged device; streaming ${o.seconds} s`);
  const acks = new Map<string, Ack[]>(PAIRS.map((p) => [p.id, []]));
  const sim = new Simulator(simulatorOptions(configPath, o.seconds + 60, o.seed, (pair, seq) => acks.get(pair)?.push({ seq, ns: now() })));
  const running = sim.run().catch(() => null);
  await new Promise((r) => setTimeout(r, o.seconds * 1000));
  const killed = now();
  await daemon.stop('SIGKILL');
  sim.stop();
  await running;
  for (const [pair, list] of acks) {
    const model = sim.model(pair);
    const acked = list.at(-1)?.seq ?? 0;
    const tags = model.items.filter((it) => it.kind === 'tag' && it.seq <= acked).length;
    const copied = model.items.some((it) => it.kind === 'resync-end' && it.seq <= acked);
    o.log(`${pair}: acknowledged up to seq ${acked} when the daemon was killed (${tags} tags, initial copy ${copied ? 'done' : 'not done'})`);
  }
  o.log(`the daemon rolled, recycled and pruned: ${describeRetention(join(home, 'retention'))}; ${countLines(daemon.output, '"history past the retention window dropped"')} undo segments dropped for time`);
  await disk.stop();
  const entries = readLog(disk.logPath);
  const flushes = entries.filter((e) => e.kind === LogKind.Flush).length;
  o.log(`device log: ${entries.length - flushes} writes, ${flushes} flushes`);
  return { entries, acks, models: new Map(PAIRS.map((p) => [p.id, sim.model(p.id)])), initDone, started, killed };
}

/** What the retention volume holds: ingest segments, spares, undo segments. */
function describeRetention(root: string): string {
  const count = (dir: string, match: (name: string) => boolean): number => {
    try {
      return readdirSync(dir).filter(match).length;
    } catch {
      return 0;
    }
  };
  const ingest = join(root, 'ingest');
  const undo = PAIRS.map((p) => `${p.id} ${count(join(root, 'pairs', p.id, 'undo'), (n) => /^\d+\.undo$/.test(n))}`).join(', ');
  const lastIngest = readdirSync(ingest).filter((n) => /^\d+\.log$/.test(n)).sort().pop() ?? 'none';
  return `ingest segments up to ${lastIngest} (${count(ingest, (n) => n.startsWith('spare-'))} spares), undo segments ${undo}`;
}

function countLines(text: string, needle: string): number {
  return text.split('\n').filter((line) => line.includes(needle)).length;
}

/** The newest seq of `pair` acknowledged before `ns`. */
function ackedBefore(acks: readonly Ack[], ns: bigint | null): number {
  let seq = 0;
  for (const a of acks) if (ns === null || a.ns < ns) seq = a.seq;
  return seq;
}

interface StatusPair {
  pair: string;
  durableSeq: number;
  state: string;
  lastError: string | null;
}

async function statusOf(configPath: string): Promise<Map<string, StatusPair>> {
  const r = await cli(['status', '--config', configPath, '--json']);
  if (r.code !== 0) throw new Error(`status failed: ${r.stderr.trim()}`);
  return new Map((JSON.parse(r.stdout) as { pairs: StatusPair[] }).pairs.map((p) => [p.pair, p]));
}

/** What start-up logged it put right after the cut, one phrase each. */
function startupRepairs(output: string): string[] {
  const out = new Set<string>();
  for (const line of output.split('\n')) {
    if (line.includes('"ingest log ended in a torn batch')) out.add('torn ingest tail');
    if (line.includes('"ingest segments past the end held nothing whole')) out.add('ingest segments past the end');
    if (line.includes('"undo log put right after an unclean stop"')) {
      if (line.includes('torn batch at the end')) out.add('torn undo tail');
      if (line.includes('past the end held nothing whole')) out.add('undo segments past the end');
      if (line.includes('the catalog was behind the log')) out.add('catalog behind an undo log');
    }
  }
  return [...out];
}

/** The agent on a rebuilt device: what it must hold, verify, rebuild, and doing its work again. */
async function checkAgent(o: PowerLossOptions, home: string, point: Point, rec: Recording, nextFlush: LogEntry | null, result: PointResult): Promise<void> {
  const configPath = join(home, 'agent.yaml');
  const fail = (what: string): void => void result.failures.push(what);
  const daemon = new Daemon(configPath, o.mutant);
  try {
    await daemon.start();
  } catch (err) {
    fail((err as Error).message);
    return;
  }
  const repaired = startupRepairs(daemon.output);
  result.repairs.push(...repaired);
  if (repaired.length > 0) result.checks.push(`start-up put right: ${repaired.join('; ')}`);
  try {
    if (point.init) {
      const s = await cli(['status', '--config', configPath]);
      if (s.code !== 0) fail(`status after init: ${s.stderr.trim()}`);
      else result.checks.push('the installation init made is whole: the agent starts on it');
      return;
    }
    const status = await statusOf(configPath);
    const cliArgs = [process.execPath, MAIN];
    for (const p of PAIRS) {
      const model = rec.models.get(p.id) as SourceModel;
      const must = ackedBefore(rec.acks.get(p.id) ?? [], nextFlush?.ns ?? null);
      const held = status.get(p.id)?.durableSeq ?? 0;
      if (held < must) fail(`${p.id}: acknowledged seq ${must} before the next flush completed, the agent holds only ${held}`);
      else result.checks.push(`${p.id}: holds seq ${held}, at least the ${must} acknowledged before the next flush`);
      const verify = await cli(['verify', p.id, '--config', configPath, '--json']);
      if (verify.code !== 0) fail(`${p.id}: verify: ${(verify.stderr || verify.stdout).trim().split('\n')[0]}`);
      else result.checks.push(`${p.id}: verify passes`);
      if (must === 0) continue;
      const oldest = await oldestRetainedSeq(cliArgs, configPath, p.id);
      if (!model.inResync(must)) {
        const c = await checkPoint(cliArgs, configPath, model, `seq:${must}`, must);
        if (c.ok) result.checks.push(`${p.id}: seq:${must} (latest acknowledged) rebuilds exactly`);
        else fail(`${p.id}: seq:${must}: ${c.error}`);
      } else {
        result.checks.push(`${p.id}: seq:${must} is inside the initial copy (not a recovery point)`);
      }
      const tag = [...model.items].reverse().find((it) => it.kind === 'tag' && it.seq <= must && it.seq >= oldest && !model.inResync(it.seq));
      if (tag && tag.kind === 'tag') {
        const c = await checkPoint(cliArgs, configPath, model, `tag:${tag.name}`, tag.seq);
        if (c.ok) result.checks.push(`${p.id}: tag:${tag.name} rebuilds exactly`);
        else fail(`${p.id}: tag:${tag.name}: ${c.error}`);
      }
    }
    // The stream taken up again, by a process server that takes each pair over with a delta resync.
    const sim = new Simulator(simulatorOptions(configPath, 3, o.seed + 1000 + point.mark));
    const report = await sim.run().catch((err: unknown) => err as Error);
    if (report instanceof Error) {
      fail(`streaming again: ${report.message}`);
      return;
    }
    result.checks.push(`streamed again: ${report.itemsAcked} items acknowledged, every pair resynced`);
    const stopped = await daemon.stop('SIGTERM');
    if (stopped !== 0) fail(`SIGTERM: the agent exited ${stopped}: ${daemon.tail()}`);
    await daemon.start();
    const again = await statusOf(configPath);
    for (const p of PAIRS) {
      const model = sim.model(p.id);
      const acked = report.pairs.find((r) => r.pair === p.id)?.ackedSeq ?? 0;
      const held = again.get(p.id)?.durableSeq ?? 0;
      if (held < acked) fail(`${p.id}: after a restart holds seq ${held} of the ${acked} acknowledged`);
      const verify = await cli(['verify', p.id, '--config', configPath, '--json']);
      if (verify.code !== 0) fail(`${p.id}: verify after the restart: ${(verify.stderr || verify.stdout).trim().split('\n')[0]}`);
      const c = await checkPoint([process.execPath, MAIN], configPath, model, 'latest', model.lastSeq);
      if (!c.ok) fail(`${p.id}: latest after the restart: ${c.error}`);
    }
    result.checks.push('restarted once more: everything acknowledged is there, verify passes, latest rebuilds exactly');
  } catch (err) {
    fail(`checking the agent: ${(err as Error).message}`);
  } finally {
    const code = await daemon.stop('SIGTERM');
    if (code !== null && code !== 0) fail(`the agent exited ${code} on SIGTERM: ${daemon.tail()}`);
  }
}

export async function runPowerLoss(o: PowerLossOptions): Promise<PointResult[]> {
  const missing = missingPrerequisites();
  if (missing !== null) throw new Error(`the power-loss test cannot run here: ${missing}`);
  const work = resolve(o.dir);
  cleanUpAfter(work);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const random = rng(o.seed);
  const bin = buildLogWrites(work);
  const disk = new LoggedDisk(work, DEVICE_BYTES, join(work, 'recorded'));
  const results: PointResult[] = [];
  try {
    disk.start(bin);
    const rec = await record(o, disk, join(work, 'recorded', 'home'));
    // One image brought forward mark by mark; each point starts from a copy of it.
    const base = join(work, 'base.img');
    writeFileSync(base, '');
    const baseFd = openSync(base, 'r+');
    const writer = new ImageWriter(disk.logPath);
    let applied = 0;
    try {
      const points = choosePoints(rec.entries, rec, o.points, random, (w) => writer.opens(w) === 'segment');
      for (const point of points) {
        writer.apply(baseFd, rec.entries.slice(applied, point.mark).map((entry) => ({ entry })));
        applied = point.mark;
        const { writes, nextFlush } = unflushedAfter(rec.entries, point.mark);
        const extras = extrasFor(point.variant, writes, random, (w) => writer.opens(w));
        const markNs = (rec.entries[point.mark] as LogEntry).ns;
        const result: PointResult = { mark: point.mark, variant: point.variant, at: Number(markNs - rec.started) / 1e9, checks: [], failures: [], repairs: [] };
        results.push(result);
        const image = join(work, 'point.img');
        copyImage(base, image);
        const fd = openSync(image, 'r+');
        try {
          writer.apply(fd, extras.replayed);
        } finally {
          closeSync(fd);
        }
        result.checks.push(`device ${extras.note}`);
        const mounted = MountedImage.attach(image, join(work, 'rebuilt'));
        let isMounted = false;
        try {
          const fsck = checkFilesystem(mounted.device);
          if (fsck.repairCode >= 4 || fsck.checkCode !== 0) {
            result.failures.push(`e2fsck: ${fsck.repairCode}/${fsck.checkCode}: ${fsck.output.split('\n').slice(-4).join(' | ')}`);
            continue;
          }
          result.checks.push(`e2fsck ${fsck.repairCode === 0 ? 'clean' : 'repaired what the cut left'}, then clean`);
          mounted.mount();
          isMounted = true;
          await checkAgent(o, join(work, 'rebuilt', 'home'), point, rec, nextFlush, result);
        } finally {
          mounted.detach(isMounted);
          rmSync(image, { force: true });
        }
        if (o.verbose) for (const line of [...result.checks, ...result.failures]) o.log(`    ${line}`);
        o.log(`${result.failures.length === 0 ? 'ok  ' : 'FAIL'} mark ${point.mark} (${point.init ? 'after init' : `${result.at.toFixed(2)} s`}) ${point.variant}: ${result.failures.length === 0 ? result.checks.length + ' checks' : result.failures.join('; ')}`);
      }
    } finally {
      closeSync(baseFd);
      writer.close();
    }
  } finally {
    await disk.stop().catch(() => undefined);
    if (!o.keep) rmSync(work, { recursive: true, force: true });
  }
  return results;
}

async function main(): Promise<void> {
  const { scriptArgs } = await import('./script-args.js');
  const values = scriptArgs(__filename, {
    points: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '14' },
    seed: { type: 'string', default: '1' },
    dir: { type: 'string', default: 'powerloss-tmp' },
    keep: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
    mutant: { type: 'string' },
  });
  if (values.mutant !== undefined && values.mutant !== 'ack-before-flush') {
    process.stderr.write('power-loss: --mutant takes ack-before-flush\n');
    process.exit(2);
  }
  const t0 = Date.now();
  const results = await runPowerLoss({
    points: Math.max(2, Number(values.points)),
    seconds: Number(values.seconds),
    seed: Number(values.seed),
    dir: values.dir,
    keep: values.keep,
    verbose: values.verbose,
    mutant: values.mutant === 'ack-before-flush' ? 'ack-before-flush' : null,
    log: (line) => process.stdout.write(`${((Date.now() - t0) / 1000).toFixed(1).padStart(7)}s  ${line}\n`),
  });
  const failed = results.filter((r) => r.failures.length > 0).length;
  const byVariant = (v: Variant): number => results.filter((r) => r.variant === v).length;
  const repairs = new Map<string, number>();
  for (const r of results) for (const what of r.repairs) repairs.set(what, (repairs.get(what) ?? 0) + 1);
  if (repairs.size > 0) process.stdout.write(`start-up put right: ${[...repairs].map(([what, n]) => `${what} (${n} points)`).join(', ')}\n`);
  process.stdout.write(`power-loss: ${results.length} crash points (A ${byVariant('A')}, B ${byVariant('B')}, C ${byVariant('C')}): ${results.length - failed} passed, ${failed} failed\n`);
  process.exitCode = failed > 0 ? 1 : 0;
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`power-loss: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
