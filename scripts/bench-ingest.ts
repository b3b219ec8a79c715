// npm run bench:ingest [-- --suite steady,copy,resync,many --seconds 8 --runs 1 --quick
//                        --case 64k:1 --copy-bytes 2048 --many-pairs 64 --many-seconds 20
//                        --fresh-targets --targets-dir DIR --profile DIR --pin --dir bench-tmp]
//
// The simulator against the real daemon over TLS on loopback, against a bare
// wss sink (same client, a server that only parses and acks; at half load
// also one that flushes each message first) and against the disk's own
// limits, all measured in the same run. Suites:
//   steady  sequential writes into targets holding data: acked and applied
//           MB/s, ack latency, CPU, peak RSS; at half load how long each
//           server held a message (arrival to ack, no client, no transport);
//   copy    an initial copy (resync-start, the whole disk, resync-end) into
//           new sparse targets, and into a disk holding old data (a reprotect
//           onto the original disk), against the sink doing the same;
//   resync  a delta resync of targets that hold the copy with 10 % of their
//           blocks changed: the whole disk compared by checksums and made
//           equal, against the rate the target can be read;
//   many    64 pairs of random 64 KiB writes at once: acked, applied, how
//           long the targets take to catch up, peak RSS.
// Every agent case also says where the applier's time went (its phases, from
// the daemon's metrics over the run and the catch-up).
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { BlockFile, alignedBuffer } from '../src/native';
import { imageOf } from '../src/recovery/image';
import { blockChecksums } from '../src/server/checksums';
import { ACK_LATENCY_BUCKETS } from '../src/metrics/server';
import { Simulator, type SimulateOptions, type SimulateReport } from '../src/simulator/simulator';
import type { WorkloadName } from '../src/simulator/workload';
import { measureApplyPathLimit, prewritten } from './bench/apply-path-limit';
import { BenchDaemon, BenchSink, heldCounts, pinClient, procStats, scrapeDelta, type BenchPair, type HarnessOptions, type Scrape } from './bench/ingest-harness';
import { measureRawAppend } from './bench/raw-append';
import { GiB, KiB, MB, MiB, formatBytes, histogramQuantile, median, table } from './bench/stats';
import { scriptArgs } from './script-args';

const values = scriptArgs(__filename, {
  dir: { type: 'string', default: 'bench-tmp' },
  suite: { type: 'string', default: 'steady,copy,resync,many' },
  seconds: { type: 'string', default: '8' },
  runs: { type: 'string', default: '1' },
  quick: { type: 'boolean', default: false },
  // Target images elsewhere than the retention volume, as on a master target (e.g. /dev/shm here).
  'targets-dir': { type: 'string' },
  // steady: new sparse targets for every run instead of targets that hold data.
  'fresh-targets': { type: 'boolean', default: false },
  profile: { type: 'string' },
  // One case only, e.g. --case 64k:1 (writes:pairs); steady then skips the half-load run.
  case: { type: 'string' },
  // MiB copied per copy case, over all its pairs (and the disk size of the resync cases).
  'copy-bytes': { type: 'string', default: '2048' },
  'many-pairs': { type: 'string', default: '64' },
  'many-seconds': { type: 'string', default: '20' },
  pin: { type: 'boolean', default: false },
});
const dir = resolve(values.dir);
const seconds = Number(values.seconds);
const runs = Math.max(1, Number(values.runs));
const copyBytes = Number(values['copy-bytes']) * MiB;
const suites = new Set(values.suite.split(','));
for (const s of suites) if (!['steady', 'copy', 'resync', 'many'].includes(s)) throw new Error(`--suite ${s}: expected steady, copy, resync or many`);
const harness: HarnessOptions = { dir, pin: values.pin, profileDir: values.profile ? resolve(values.profile) : null };
if (values.pin) pinClient();
const targetsDir = resolve(values['targets-dir'] ?? join(dir, 'targets'));
const only = values.case ? /^(\d+)([km]):(\d+)$/i.exec(values.case) : null;
if (values.case && !only) throw new Error(`--case ${values.case}: expected e.g. 64k:1 or 1m:8`);
const caseIo = only ? Number(only[1]) * (only[2]?.toLowerCase() === 'm' ? MiB : KiB) : null;
const casePairs = only ? Number(only[3]) : null;

// ---- outcomes ---------------------------------------------------------------

interface ApplyPhases {
  log: number;
  logRead: number;
  read: number;
  undo: number;
  write: number;
  flush: number;
  busy: number;
  lagWait: number;
  beforeImageRead: number;
  uncaptured: number;
}

interface Outcome {
  mbps: number;
  /** Bytes over the run and the time the targets took to catch up after it: what the agent sustains. */
  appliedMbps: number;
  catchUpSeconds: number;
  /** Ack latency of items sent after the first second (both ends warm). */
  p50: number;
  p99: number;
  /** Ack latency p99 over the whole run, start-up included. */
  p99All: number;
  cpuPct: number;
  hwm: number;
  /** From a message's arrival at the server to its ack handed to the socket, after the first second (ms; NaN: not measured). */
  heldP50: number;
  heldP99: number;
  /** The daemon's applier over the run and the catch-up (null for a sink). */
  phases: ApplyPhases | null;
}

function heldQuantiles(counts: number[] | null): { heldP50: number; heldP99: number } {
  if (counts === null) return { heldP50: Number.NaN, heldP99: Number.NaN };
  return { heldP50: 1000 * histogramQuantile(ACK_LATENCY_BUCKETS, counts, 0.5), heldP99: 1000 * histogramQuantile(ACK_LATENCY_BUCKETS, counts, 0.99) };
}

function phasesBetween(after: Scrape, before: Scrape): ApplyPhases {
  const d = (k: string): number => scrapeDelta(after, before, k);
  return {
    log: d('mtagent_apply_phase_seconds_total{phase="log"}'),
    logRead: d('mtagent_apply_log_read_bytes_total'),
    read: d('mtagent_apply_phase_seconds_total{phase="read"}'),
    undo: d('mtagent_apply_phase_seconds_total{phase="undo"}'),
    write: d('mtagent_apply_phase_seconds_total{phase="write"}'),
    flush: d('mtagent_apply_phase_seconds_total{phase="flush"}'),
    busy: d('mtagent_apply_busy_seconds_total'),
    lagWait: d('mtagent_apply_lag_wait_seconds_total'),
    beforeImageRead: d('mtagent_apply_before_image_read_bytes_total'),
    uncaptured: d('mtagent_apply_uncaptured_bytes_total'),
  };
}

interface Measured {
  report: SimulateReport;
  /** Bytes the case moved (acked write payload, or the disk compared by a delta resync). */
  bytes: number;
  seconds: number;
  catchUp: number;
  cpu: number;
  hwm: number;
  held: number[] | null;
  phases: ApplyPhases | null;
}

function outcome(m: Measured): Outcome {
  const steady = m.report.steadyAckLatencyMs;
  return {
    mbps: m.bytes / m.seconds / MB,
    appliedMbps: m.bytes / (m.seconds + m.catchUp) / MB,
    catchUpSeconds: m.catchUp,
    p50: steady.p50,
    p99: steady.p99,
    p99All: m.report.ackLatencyMs.p99,
    cpuPct: (100 * m.cpu) / (m.seconds + m.catchUp),
    hwm: m.hwm,
    ...heldQuantiles(m.held),
    phases: m.phases,
  };
}

// ---- the simulator ---------------------------------------------------------

interface Load {
  workload: WorkloadName;
  io: number;
  rate: number | null;
  durationSeconds: number | null;
}

function simulator(url: string, ca: Buffer, passphrase: Buffer, pairs: readonly BenchPair[], load: Load, extra: Partial<SimulateOptions> = {}): Simulator {
  return new Simulator({
    client: { url, passphrase, processServerId: 'ps-bench', ca },
    pairs: pairs.map((p) => ({ id: p.id, diskBytes: p.sizeBytes })),
    workload: load.workload,
    ioBytes: load.io,
    rateBytesPerSecond: load.rate,
    durationSeconds: load.durationSeconds,
    items: null,
    tagEvery: 0,
    group: null,
    tickSeconds: 60,
    seed: 1,
    messageBytes: MiB,
    reconnect: false,
    latencyWarmupSeconds: 1,
    ...extra,
  });
}

/** Runs `sim` against a started daemon and measures it, the catch-up included. */
async function measureDaemon(daemon: BenchDaemon, run: () => Promise<SimulateReport>, bytesOf: (r: SimulateReport) => number, wantHeld: boolean): Promise<Measured> {
  const before = procStats(daemon.pid);
  const scrapeBefore = await daemon.scrape();
  const warm = wantHeld ? new Promise<Scrape>((res, rej) => setTimeout(() => daemon.scrape().then(res, rej), 1000)) : null;
  warm?.catch(() => undefined); // awaited below; this only keeps an early failure from counting as unhandled
  const t = performance.now();
  const report = await run();
  const runSeconds = (performance.now() - t) / 1000;
  const scrapeRun = await daemon.scrape();
  const held = warm === null ? null : heldCounts(scrapeRun, await warm);
  const catchUp = await daemon.catchUpSeconds();
  // The peak includes the catch-up: applying flat out once the client stops is part of the agent's work.
  const after = procStats(daemon.pid);
  return { report, bytes: bytesOf(report), seconds: runSeconds, catchUp, cpu: after.cpu - before.cpu, hwm: after.hwm, held, phases: phasesBetween(await daemon.scrape(), scrapeBefore) };
}

async function measureSink(pairs: readonly BenchPair[], load: Load, flushFile: string | null = null): Promise<Outcome> {
  const sink = await BenchSink.start(harness, flushFile);
  try {
    const before = procStats(sink.pid);
    const warm = setTimeout(() => sink.restartHeldCount(), 1000);
    const t = performance.now();
    const report = await simulator(sink.url, sink.ca, Buffer.from('x'), pairs, load).run();
    const runSeconds = (performance.now() - t) / 1000;
    clearTimeout(warm);
    const held = load.rate === null ? null : await sink.held();
    const after = procStats(sink.pid);
    return outcome({ report, bytes: report.bytesAcked, seconds: runSeconds, catchUp: 0, cpu: after.cpu - before.cpu, hwm: after.hwm, held, phases: null });
  } finally {
    sink.stop();
  }
}

// ---- targets ------------------------------------------------------------

const targetPath = (name: string): string => join(targetsDir, `${name}.img`);
const holdingData = new Set<string>();

/** A target written whole with data once (kept from run to run), so that before-images are data, read from the disk. */
async function targetHoldingData(path: string, bytes: number): Promise<void> {
  mkdirSync(targetsDir, { recursive: true });
  if (holdingData.has(path)) return;
  const chunk = alignedBuffer(8 * MiB);
  chunk.fill(0x5a);
  await (await prewritten(path, bytes, chunk, 0)).close();
  holdingData.add(path);
}

function benchPairs(count: number, bytes: number, prefix = 'b'): BenchPair[] {
  return Array.from({ length: count }, (_, i) => ({ id: `${prefix}${i}`, target: targetPath(`${prefix}${i}`), sizeBytes: bytes }));
}

function removeTargets(pairs: readonly BenchPair[]): void {
  for (const p of pairs) {
    rmSync(p.target, { force: true });
    holdingData.delete(p.target);
  }
}

/** The agent's own part of a delta resync, alone: SHA-256 per 64 KiB block of a target, as it answers a checksum request (MB/s). */
async function checksumRate(path: string, bytes: number): Promise<number> {
  const f = await BlockFile.open(path, { direct: true });
  const t = performance.now();
  for (let at = 0; at < bytes; at += 64 * MiB) await blockChecksums(imageOf(f), bytes, at, Math.min(64 * MiB, bytes - at), 64 * KiB);
  const s = (performance.now() - t) / 1000;
  await f.close();
  return bytes / s / MB;
}

/** Sequential O_DIRECT reads of a file in 8 MiB pieces: how fast a target can be read (MB/s). */
async function readRate(path: string, bytes: number): Promise<number> {
  const f = await BlockFile.open(path, { direct: true });
  const b = alignedBuffer(8 * MiB);
  const t = performance.now();
  for (let at = 0; at < bytes; at += b.length) await f.read(b, at);
  const s = (performance.now() - t) / 1000;
  await f.close();
  return bytes / s / MB;
}

// ---- printing -----------------------------------------------------------

const m = (xs: readonly Outcome[], k: keyof Omit<Outcome, 'phases'>): number => median(xs.map((x) => x[k]));
const mib = (xs: readonly Outcome[]): string => `${(Math.max(...xs.map((a) => a.hwm)) / MiB).toFixed(0)} MiB`;

/** The median run's phases (by applied rate), per GiB moved, and the busy share of the run. */
function phaseRow(label: string, xs: readonly Outcome[], bytesPerRun: number): string[] {
  const sorted = [...xs].sort((a, b) => a.appliedMbps - b.appliedMbps);
  const o = sorted[Math.floor(sorted.length / 2)] as Outcome;
  const p = o.phases as ApplyPhases;
  const perGiB = (s: number): string => (s / (bytesPerRun / GiB)).toFixed(2);
  const wall = bytesPerRun / (o.appliedMbps * MB);
  return [
    label,
    perGiB(p.log),
    formatBytes(Math.round(p.logRead / MiB) * MiB),
    perGiB(p.read),
    perGiB(p.undo),
    perGiB(p.write),
    perGiB(p.flush),
    `${((100 * p.busy) / wall).toFixed(0)} %`,
    p.lagWait.toFixed(1),
    formatBytes(Math.round(p.beforeImageRead / MiB) * MiB),
    formatBytes(Math.round(p.uncaptured / MiB) * MiB),
  ];
}
const PHASE_HEADER = ['case', 'log s/GiB', 'read back', 'read s/GiB', 'undo s/GiB', 'write s/GiB', 'flush s/GiB', 'applier busy', 'lag wait s', 'before-images read', 'applied without'];
const PHASE_NOTE =
  'applier phases of the median run, seconds per GiB moved, summed over pairs applied at once: log = batches read back from the ingest log (read back: how much), read = before-images from the target, undo = making them durable, write and flush = the target; busy = share of the run and catch-up the applier worked; lag wait = seconds appends waited on the apply lag limit (summed over appends); applied without = resync data with no before-image (no point before the resync)';

// ---- suites -------------------------------------------------------------

async function steadySuite(limit: number, applyLimit: number, flushMs: number): Promise<void> {
  const fresh = values['fresh-targets'];
  const state = fresh ? 'fresh and sparse' : 'holding data (before-images are data)';
  console.log(`\n## steady: sequential writes into 1 GiB targets ${state}, ${seconds} s per case`);
  const sizes = caseIo !== null ? [caseIo] : values.quick ? [MiB, 64 * KiB] : [MiB, 64 * KiB, 4 * KiB];
  const pairCounts = casePairs !== null ? [casePairs] : [1, 8];
  const rows: string[][] = [['writes', 'pairs', 'agent MB/s', 'applied MB/s', 'sink MB/s', 'x sink', 'x limit', 'x apply limit', 'ack p50 ms*', 'ack p99 ms*', 'agent CPU %', 'sink CPU %', 'agent peak RSS']];
  const phases: string[][] = [PHASE_HEADER];
  const agentRun = async (pairs: BenchPair[], io: number, rate: number | null): Promise<Outcome> => {
    for (const p of pairs) {
      if (fresh) rmSync(p.target, { force: true });
      else await targetHoldingData(p.target, p.sizeBytes);
    }
    const daemon = await BenchDaemon.create(harness, pairs);
    await daemon.start();
    try {
      const load = { workload: 'sequential' as const, io, rate, durationSeconds: seconds };
      return outcome(await measureDaemon(daemon, () => simulator(daemon.url, daemon.ca, daemon.passphrase, pairs, load).run(), (r) => r.bytesAcked, rate !== null));
    } finally {
      await daemon.stop();
      daemon.remove();
      if (fresh) removeTargets(pairs);
    }
  };
  for (const io of sizes) {
    for (const n of pairCounts) {
      const pairs = benchPairs(n, GiB);
      const agent: Outcome[] = [];
      const sink: Outcome[] = [];
      for (let r = 0; r < runs; r++) {
        sink.push(await measureSink(pairs, { workload: 'sequential', io, rate: null, durationSeconds: seconds }));
        agent.push(await agentRun(pairs, io, null));
      }
      rows.push([
        formatBytes(io),
        String(n),
        m(agent, 'mbps').toFixed(0),
        m(agent, 'appliedMbps').toFixed(0),
        m(sink, 'mbps').toFixed(0),
        (m(agent, 'mbps') / m(sink, 'mbps')).toFixed(2),
        (m(agent, 'mbps') / limit).toFixed(2),
        (m(agent, 'appliedMbps') / applyLimit).toFixed(2),
        m(agent, 'p50').toFixed(1),
        m(agent, 'p99').toFixed(1),
        m(agent, 'cpuPct').toFixed(0),
        m(sink, 'cpuPct').toFixed(0),
        mib(agent),
      ]);
      phases.push(phaseRow(`${formatBytes(io)}:${n}`, agent, m(agent, 'mbps') * MB * seconds));
    }
  }
  console.log(table(rows));
  console.log('* items sent after the first second of each run');
  console.log('applied MB/s: acked bytes over the run and the time the targets took to hold all of it after; x apply limit is of the applied rate; peak RSS includes the catch-up');
  console.log(table(phases));
  console.log(PHASE_NOTE);
  if (only) return;
  // Latency at half load: the rate of the 64 KiB, 1-pair case halved.
  const one = benchPairs(1, GiB);
  const full = await agentRun(one, 64 * KiB, null);
  const rate = (full.mbps * MB) / 2;
  const halves: Outcome[] = [];
  const sinkHalves: Outcome[] = [];
  const flushingHalves: Outcome[] = [];
  const load = { workload: 'sequential' as const, io: 64 * KiB, rate, durationSeconds: seconds };
  for (let r = 0; r < runs; r++) {
    flushingHalves.push(await measureSink(one, load, join(dir, 'flushing-sink.log')));
    sinkHalves.push(await measureSink(one, load));
    halves.push(await agentRun(one, 64 * KiB, rate));
  }
  const p = (xs: Outcome[], k: 'p50' | 'p99' | 'p99All' | 'heldP50' | 'heldP99'): number => median(xs.map((x) => x[k]));
  console.log(`\nat half load (64 KiB writes, 1 pair, ${(full.mbps / 2).toFixed(0)} MB/s), items sent after the first second:`);
  console.log(`  agent ack p50 ${p(halves, 'p50').toFixed(2)} ms, p99 ${p(halves, 'p99').toFixed(2)} ms = ${(p(halves, 'p99') / flushMs).toFixed(1)} x the flush latency`);
  console.log(`  sink  ack p50 ${p(sinkHalves, 'p50').toFixed(2)} ms, p99 ${p(sinkHalves, 'p99').toFixed(2)} ms (transport and client alone)`);
  console.log(
    `  flushing sink  ack p50 ${p(flushingHalves, 'p50').toFixed(2)} ms, p99 ${p(flushingHalves, 'p99').toFixed(2)} ms = ${(p(flushingHalves, 'p99') / flushMs).toFixed(1)} x the flush latency (each message written and flushed before its ack, nothing else: the floor for acking only what is durable)`,
  );
  console.log(`  whole run, start-up included: agent p99 ${p(halves, 'p99All').toFixed(2)} ms, sink p99 ${p(sinkHalves, 'p99All').toFixed(2)} ms, flushing sink p99 ${p(flushingHalves, 'p99All').toFixed(2)} ms`);
  console.log("  held by the server, from a message's arrival to its ack handed to the socket (no client, no transport; estimated from histogram buckets):");
  const heldLine = (xs: Outcome[]): string => `p50 ${p(xs, 'heldP50').toFixed(2)} ms, p99 ${p(xs, 'heldP99').toFixed(2)} ms = ${(p(xs, 'heldP99') / flushMs).toFixed(1)} x the flush latency`;
  console.log(`    agent ${heldLine(halves)}; flushing sink ${heldLine(flushingHalves)}; sink ${heldLine(sinkHalves)}`);
  const added = (base: Outcome[]): string => `${(p(halves, 'p99') - p(base, 'p99')).toFixed(2)} ms = ${((p(halves, 'p99') - p(base, 'p99')) / flushMs).toFixed(1)} x the flush latency`;
  console.log(`  added by the agent at p99: ${added(sinkHalves)} over the sink, ${added(flushingHalves)} over the flushing sink`);
}

async function copySuite(): Promise<void> {
  console.log(`\n## copy: an initial copy of ${formatBytes(copyBytes)} over all pairs (resync-start, every block, resync-end), flat out`);
  const sizes = caseIo !== null ? [caseIo] : [MiB, 64 * KiB];
  const pairCounts = casePairs !== null ? [casePairs] : [1, 8];
  const cases: Array<{ io: number; n: number; onto: 'sparse' | 'data' }> = [];
  for (const io of sizes) for (const n of pairCounts) cases.push({ io, n, onto: 'sparse' });
  for (const io of sizes) cases.push({ io, n: casePairs ?? 1, onto: 'data' });
  const rows: string[][] = [['writes', 'pairs', 'target', 'agent acked MB/s', 'applied MB/s', 'sink MB/s', 'acked x sink', 'applied x sink', 'ack p50 ms*', 'ack p99 ms*', 'sink p99 ms*', 'p99 x sink', 'catch-up s', 'agent CPU %', 'agent peak RSS']];
  const phases: string[][] = [PHASE_HEADER];
  for (const { io, n, onto } of cases) {
    const pairs = benchPairs(n, Math.floor(copyBytes / n / MiB) * MiB, 'c');
    const load: Load = { workload: 'fill', io, rate: null, durationSeconds: null };
    const agent: Outcome[] = [];
    const sink: Outcome[] = [];
    for (let r = 0; r < runs; r++) {
      sink.push(await measureSink(pairs, load));
      if (onto === 'data') for (const p of pairs) await targetHoldingData(p.target, p.sizeBytes);
      else removeTargets(pairs);
      const daemon = await BenchDaemon.create(harness, pairs);
      await daemon.start();
      try {
        agent.push(outcome(await measureDaemon(daemon, () => simulator(daemon.url, daemon.ca, daemon.passphrase, pairs, load).run(), (rep) => rep.bytesAcked, false)));
      } finally {
        await daemon.stop();
        daemon.remove();
        removeTargets(pairs);
      }
    }
    rows.push([
      formatBytes(io),
      String(n),
      onto === 'sparse' ? 'new, sparse' : 'holding data',
      m(agent, 'mbps').toFixed(0),
      m(agent, 'appliedMbps').toFixed(0),
      m(sink, 'mbps').toFixed(0),
      (m(agent, 'mbps') / m(sink, 'mbps')).toFixed(2),
      (m(agent, 'appliedMbps') / m(sink, 'mbps')).toFixed(2),
      m(agent, 'p50').toFixed(1),
      m(agent, 'p99').toFixed(1),
      m(sink, 'p99').toFixed(1),
      (m(agent, 'p99') / m(sink, 'p99')).toFixed(2),
      m(agent, 'catchUpSeconds').toFixed(1),
      m(agent, 'cpuPct').toFixed(0),
      mib(agent),
    ]);
    phases.push(phaseRow(`${formatBytes(io)}:${n} ${onto}`, agent, copyBytes));
  }
  console.log(table(rows));
  console.log('* items sent after the first second; applied MB/s: the copy over the run and the catch-up after it');
  console.log(table(phases));
  console.log(PHASE_NOTE);
}

/** Overwrites `share` of a target's 64 KiB blocks with other data (seeded): the blocks a delta resync must find. */
function changeBlocks(path: string, bytes: number, share: number, seed: number): number {
  const block = 64 * KiB;
  const blocks = bytes / block;
  const fd = openSync(path, 'r+');
  let x = seed || 1;
  let changed = 0;
  const data = Buffer.alloc(block, 0xa7);
  for (let i = 0; i < blocks; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    if (x / 2 ** 32 >= share) continue;
    data.writeUInt32LE(i, 0);
    writeSync(fd, data, 0, block, i * block);
    changed++;
  }
  closeSync(fd);
  return changed;
}

async function resyncSuite(): Promise<void> {
  const share = 0.1;
  console.log(`\n## resync: a delta resync of ${formatBytes(copyBytes)} of targets over all pairs, ${share * 100} % of their 64 KiB blocks changed (after an initial copy, so the pairs have history to keep)`);
  const rows: string[][] = [['pairs', 'disk compared', 'blocks sent', 'made equal MB/s', 'target read MB/s', 'x read', 'agent sums MB/s', 'x agent sums', 'ack p99 ms', 'agent CPU %', 'agent peak RSS']];
  const phases: string[][] = [PHASE_HEADER];
  for (const n of casePairs !== null ? [casePairs] : [1, 8]) {
    const pairs = benchPairs(n, Math.floor(copyBytes / n / MiB) * MiB, 'r');
    const agent: Outcome[] = [];
    const reads: number[] = [];
    const sums: number[] = [];
    let sent = 0;
    for (let r = 0; r < runs; r++) {
      removeTargets(pairs);
      const daemon = await BenchDaemon.create(harness, pairs);
      await daemon.start();
      try {
        const sim = simulator(daemon.url, daemon.ca, daemon.passphrase, pairs, { workload: 'fill', io: MiB, rate: null, durationSeconds: null });
        await sim.run();
        await daemon.catchUpSeconds();
        await daemon.stop();
        for (const [i, p] of pairs.entries()) changeBlocks(p.target, p.sizeBytes, share, 7 + i + r);
        reads.push(await readRate((pairs[0] as BenchPair).target, (pairs[0] as BenchPair).sizeBytes));
        sums.push(await checksumRate((pairs[0] as BenchPair).target, (pairs[0] as BenchPair).sizeBytes));
        await daemon.start();
        for (const p of pairs) sim.requestResync(p.id);
        const o = outcome(await measureDaemon(daemon, () => sim.run(), () => copyBytes, false));
        agent.push(o);
        sent = sim.resyncReports.slice(-n).reduce((s, x) => s + x.differing, 0);
      } finally {
        await daemon.stop();
        daemon.remove();
        removeTargets(pairs);
      }
    }
    const readMbps = median(reads);
    const sumsMbps = median(sums);
    rows.push([
      String(n),
      formatBytes(copyBytes),
      String(sent),
      m(agent, 'appliedMbps').toFixed(0),
      readMbps.toFixed(0),
      (m(agent, 'appliedMbps') / readMbps).toFixed(2),
      sumsMbps.toFixed(0),
      (m(agent, 'appliedMbps') / sumsMbps).toFixed(2),
      m(agent, 'p99All').toFixed(1),
      m(agent, 'cpuPct').toFixed(0),
      mib(agent),
    ]);
    phases.push(phaseRow(`resync:${n}`, agent, copyBytes));
  }
  console.log(table(rows));
  console.log('made equal: the disk compared by checksums (computed by the agent from the target) and the changed blocks sent and applied, over the time from the request to the targets holding them; target read: sequential O_DIRECT reads of one target in 8 MiB pieces; agent sums: the agent\'s checksum code alone over one target (read and SHA-256 per 64 KiB block, one core), both in the same run. The simulator, on the same two cores, builds its source and hashes it too');
  console.log(table(phases));
  console.log(PHASE_NOTE);
}

async function manySuite(): Promise<void> {
  const n = Number(values['many-pairs']);
  const manySeconds = Number(values['many-seconds']);
  const pairs = benchPairs(n, 256 * MiB, 'm');
  console.log(`\n## many: ${n} pairs of random 64 KiB writes at once for ${manySeconds} s, new sparse targets of 256 MiB`);
  const rows: string[][] = [['pairs', 'acked MB/s', 'acked', 'applied MB/s', 'catch-up s', 'ack p50 ms*', 'ack p99 ms*', 'agent CPU %', 'agent peak RSS']];
  const agent: Outcome[] = [];
  for (let r = 0; r < runs; r++) {
    removeTargets(pairs);
    const daemon = await BenchDaemon.create(harness, pairs);
    await daemon.start();
    try {
      const load: Load = { workload: 'random', io: 64 * KiB, rate: null, durationSeconds: manySeconds };
      agent.push(outcome(await measureDaemon(daemon, () => simulator(daemon.url, daemon.ca, daemon.passphrase, pairs, load).run(), (rep) => rep.bytesAcked, false)));
    } finally {
      await daemon.stop();
      daemon.remove();
      removeTargets(pairs);
    }
  }
  const acked = m(agent, 'mbps') * MB * manySeconds;
  rows.push([String(n), m(agent, 'mbps').toFixed(0), `${(acked / 1e9).toFixed(1)} GB`, m(agent, 'appliedMbps').toFixed(0), m(agent, 'catchUpSeconds').toFixed(1), m(agent, 'p50').toFixed(1), m(agent, 'p99').toFixed(1), m(agent, 'cpuPct').toFixed(0), mib(agent)]);
  console.log(table(rows));
  console.log('* items sent after the first second; catch-up: from the end of the run until every target holds all that was acked');
  console.log(table([PHASE_HEADER, phaseRow(`many:${n}`, agent, acked)]));
  console.log(PHASE_NOTE);
}

/** One 1 MiB O_DIRECT write and fdatasync on the same filesystem, median of 20: the flush latency. */
async function flushLatencyMs(): Promise<number> {
  const f = await BlockFile.open(join(dir, 'flush.bin'), { create: true, direct: true });
  const b = alignedBuffer(MiB);
  const samples: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    await f.write(b, i * MiB);
    await f.datasync();
    samples.push(performance.now() - t);
  }
  await f.close();
  rmSync(join(dir, 'flush.bin'), { force: true });
  return median(samples);
}

async function mainBench(): Promise<void> {
  mkdirSync(dir, { recursive: true });
  mkdirSync(targetsDir, { recursive: true });
  const where = values['targets-dir'] ? `in ${values['targets-dir']}` : 'on the retention filesystem';
  console.log(`bench:ingest  ${new Date().toISOString()}  ${cpus().length} cpus (${cpus()[0]?.model ?? '?'}), medians of ${runs}; targets ${where}`);
  const limit = measureRawAppend(dir, MiB, GiB, 8 * MiB).bytesPerSecond / MB;
  const flushMs = await flushLatencyMs();
  const applyLimits: number[] = [];
  for (let r = 0; r < runs; r++) applyLimits.push((await measureApplyPathLimit(dir, 4)).bytesPerSecond / MB);
  const applyLimit = median(applyLimits);
  console.log(`raw append limit ${limit.toFixed(0)} MB/s; flush latency (1 MiB O_DIRECT + fdatasync) ${flushMs.toFixed(2)} ms`);
  console.log(
    `apply path limit ${applyLimit.toFixed(0)} MB/s (${applyLimits.map((x) => x.toFixed(0)).join(' / ')}): the disk doing the agent's four passes per byte (ingest write, before-image read, undo write, target write) with no CPU of its own`,
  );
  if (suites.has('steady')) await steadySuite(limit, applyLimit, flushMs);
  if (suites.has('copy')) await copySuite();
  if (suites.has('resync')) await resyncSuite();
  if (suites.has('many')) await manySuite();
  cleanUp();
}

function cleanUp(): void {
  for (const path of holdingData) rmSync(path, { force: true });
  rmSync(dir, { recursive: true, force: true });
}

mainBench().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
