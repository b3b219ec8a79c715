// npm run bench:ingest [-- --seconds 8 --runs 1 --quick --case 64k:1 --fresh-targets
//                        --targets-dir DIR --profile DIR --pin --dir bench-tmp]
//
// The simulator against the real daemon over TLS on loopback: acked MB/s,
// the applied rate (acked bytes over the run and the targets' catch-up after
// it), ack latency, the daemon's CPU and peak RSS, against a bare wss sink (same
// client, a server that only parses and acks; at half load also one that
// flushes each message first), the raw O_DIRECT append
// limit, and the apply path limit (the disk doing the agent's I/O per byte
// and nothing else), all measured in the same run. At half load it also gives
// how long each server held a message: from its arrival to the ack handed to
// the socket (the agent's ack latency histogram; the sinks count the same
// buckets), which leaves out the client and the transport.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { initInstallation } from '../src/config/init';
import { DAEMON_NODE_FLAGS } from '../src/server/node-flags';
import { BlockFile, alignedBuffer } from '../src/native';
import { measureApplyPathLimit, prewritten } from './bench/apply-path-limit';
import { measureRawAppend } from './bench/raw-append';
import { GiB, KiB, MB, MiB, formatBytes, histogramQuantile, median, table } from './bench/stats';
import { ACK_LATENCY_BUCKETS } from '../src/metrics/server';
import { Simulator, type SimulateReport } from '../src/simulator/simulator';
import { callDaemon } from '../src/control/socket';
import type { StatusReport } from '../src/control/operations';
import { scriptArgs } from './script-args';

const values = scriptArgs(__filename, {
  dir: { type: 'string', default: 'bench-tmp' },
  seconds: { type: 'string', default: '8' },
  runs: { type: 'string', default: '1' },
  quick: { type: 'boolean', default: false },
  // Target images elsewhere than the retention volume, as on a master target (e.g. /dev/shm here).
  'targets-dir': { type: 'string' },
  // New sparse targets for every run (an initial copy to a new disk: every
  // before-image is zeros) instead of targets that hold data.
  'fresh-targets': { type: 'boolean', default: false },
  // Writes a V8 CPU profile of each daemon run into this folder (node --cpu-prof).
  profile: { type: 'string' },
  // Runs one case only, e.g. --case 64k:1 (writes:pairs), and no half-load run.
  case: { type: 'string' },
  // The client (this process) on CPU 0, the daemon or sink on CPU 1 (taskset):
  // shows what sharing both cores costs each side. Two cores or more.
  pin: { type: 'boolean', default: false },
});
const dir = resolve(values.dir);
const seconds = Number(values.seconds);
const runs = Math.max(1, Number(values.runs));
const main = join(__dirname, '..', 'src', 'cli', 'main.js');
const sinkScript = join(__dirname, 'bench-sink.js');
/** The command that starts a server: on CPU 1 with --pin. */
const serverCommand = (args: string[]): [string, string[]] => (values.pin ? ['taskset', ['-c', '1', process.execPath, ...args]] : [process.execPath, args]);
if (values.pin) execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });

function waitFor(proc: ChildProcess, text: string): Promise<void> {
  return new Promise((res, rej) => {
    let out = '';
    const t = setTimeout(() => rej(new Error(`not ready: ${out}`)), 20_000);
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(text)) {
        clearTimeout(t);
        res();
      }
    });
    proc.once('exit', (c) => rej(new Error(`exited ${c}: ${out}`)));
  });
}

/** utime+stime in seconds, and VmHWM (peak RSS) in bytes, of a process. */
function procStats(pid: number): { cpu: number; hwm: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  const tick = 100;
  const cpu = (Number(stat[11]) + Number(stat[12])) / tick;
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  return { cpu, hwm };
}

interface Outcome {
  mbps: number;
  /** Acked bytes over the run and the time the targets took to catch up after it: what the agent sustains. */
  appliedMbps: number;
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
}

/** Messages per ack latency bucket (ACK_LATENCY_BUCKETS, and one above them). */
type HeldCounts = number[];

function heldQuantiles(counts: HeldCounts | null): { heldP50: number; heldP99: number } {
  if (counts === null) return { heldP50: Number.NaN, heldP99: Number.NaN };
  return { heldP50: 1000 * histogramQuantile(ACK_LATENCY_BUCKETS, counts, 0.5), heldP99: 1000 * histogramQuantile(ACK_LATENCY_BUCKETS, counts, 0.99) };
}

/** The daemon's ack latency histogram, per bucket, from its /metrics. */
async function scrapeHeld(metricsPort: number): Promise<HeldCounts> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const cumulative = [...ACK_LATENCY_BUCKETS.map(String), '+Inf'].map((le) => {
    const m = new RegExp(`^mtagent_ack_latency_seconds_bucket\\{le="${le.replace('+', '\\+')}"\\} (\\d+)$`, 'm').exec(text);
    if (!m) throw new Error(`no bucket le=${le} in the daemon's metrics`);
    return Number(m[1]);
  });
  return cumulative.map((c, i) => c - (i === 0 ? 0 : (cumulative[i - 1] as number)));
}

function outcome(r: SimulateReport, before: { cpu: number }, after: { cpu: number; hwm: number }, catchUpSeconds = 0, held: HeldCounts | null = null): Outcome {
  const steady = r.steadyAckLatencyMs;
  return {
    mbps: r.bytesAcked / r.seconds / MB,
    appliedMbps: r.bytesAcked / (r.seconds + catchUpSeconds) / MB,
    p50: steady.p50,
    p99: steady.p99,
    p99All: r.ackLatencyMs.p99,
    cpuPct: (100 * (after.cpu - before.cpu)) / r.seconds,
    hwm: after.hwm,
    ...heldQuantiles(held),
  };
}

/**
 * Waits until every pair's target holds all that is durable (appliedSeq
 * reaches durableSeq, asked over the control socket every 20 ms); returns
 * how long that took.
 */
async function catchUpSeconds(dataDir: string): Promise<number> {
  const start = performance.now();
  for (;;) {
    const reply = await callDaemon(dataDir, 'status', {});
    if (reply === undefined) throw new Error('the daemon stopped answering on its control socket');
    const { pairs } = reply.result as StatusReport;
    if (pairs.every((p) => p.appliedSeq >= p.durableSeq)) return (performance.now() - start) / 1000;
    if (performance.now() - start > 300_000) throw new Error('the targets did not catch up within 300 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function simulate(url: string, ca: Buffer, passphrase: Buffer, pairs: number, io: number, rate: number | null): Promise<SimulateReport> {
  const sim = new Simulator({
    client: { url, passphrase, processServerId: 'ps-bench', ca },
    pairs: Array.from({ length: pairs }, (_, i) => ({ id: `b${i}`, diskBytes: GiB })),
    workload: 'sequential',
    ioBytes: io,
    rateBytesPerSecond: rate,
    durationSeconds: seconds,
    items: null,
    tagEvery: 0,
    group: null,
    tickSeconds: 60,
    seed: 1,
    messageBytes: MiB,
    reconnect: false,
    latencyWarmupSeconds: 1,
  });
  return sim.run();
}

const freshTargets = values['fresh-targets'];
const targetsDir = resolve(values['targets-dir'] ?? join(dir, 'targets'));
const targetPath = (i: number): string => join(targetsDir, `b${i}.img`);
const holdingData = new Set<string>();

/**
 * A fresh target is created sparse by the daemon. A target in use is written
 * whole with data once and kept from run to run (the agent's own writes are
 * data too), so that before-images are data, read from the disk.
 */
async function prepareTarget(path: string): Promise<void> {
  mkdirSync(targetsDir, { recursive: true });
  if (freshTargets) {
    rmSync(path, { force: true });
    return;
  }
  if (holdingData.has(path)) return;
  const chunk = alignedBuffer(8 * MiB);
  chunk.fill(0x5a);
  await (await prewritten(path, GiB, chunk, 0)).close();
  holdingData.add(path);
}

async function againstDaemon(pairs: number, io: number, rate: number | null): Promise<Outcome> {
  const root = join(dir, 'install');
  rmSync(root, { recursive: true, force: true });
  const port = 19000 + Math.floor(Math.random() * 500);
  // At a set rate (half load) the daemon's histogram gives how long it held each message.
  const metricsPort = rate === null ? null : port + 1000;
  const init = initInstallation({ dir: root, port, metricsPort, samplePairs: false });
  for (let i = 0; i < pairs; i++) await prepareTarget(targetPath(i));
  writeFileSync(init.configPath, readFileSync(init.configPath, 'utf8').replace('pairs: []', `pairs:\n${Array.from({ length: pairs }, (_, i) => `  - { id: b${i}, target: ${targetPath(i)}, sizeBytes: ${GiB} }`).join('\n')}`));
  const profile = values.profile ? ['--cpu-prof', '--cpu-prof-dir', resolve(values.profile)] : [];
  const proc = spawn(...serverCommand([...DAEMON_NODE_FLAGS, ...profile, main, 'run', '--config', init.configPath]), { stdio: ['ignore', 'pipe', 'inherit'] });
  await waitFor(proc, '"mtagent running"');
  const before = procStats(proc.pid as number);
  const passphrase = Buffer.from(readFileSync(join(root, 'passphrase'), 'utf8').trim());
  const warm = metricsPort === null ? null : new Promise<HeldCounts>((res, rej) => setTimeout(() => scrapeHeld(metricsPort).then(res, rej), 1000));
  warm?.catch(() => undefined); // awaited below; this only keeps an early failure from counting as unhandled
  const r = await simulate(`wss://127.0.0.1:${port}`, readFileSync(init.certPath), passphrase, pairs, io, rate);
  const held = warm === null ? null : subtract(await scrapeHeld(metricsPort as number), await warm);
  const cpuAfter = procStats(proc.pid as number).cpu;
  const catchUp = await catchUpSeconds(join(root, 'data'));
  // The peak includes the catch-up: applying flat out once the client stops is part of the agent's work.
  const after = { cpu: cpuAfter, hwm: procStats(proc.pid as number).hwm };
  const exited = new Promise((res) => proc.once('exit', res));
  proc.kill('SIGTERM');
  await exited;
  rmSync(root, { recursive: true, force: true });
  if (freshTargets) for (let i = 0; i < pairs; i++) rmSync(targetPath(i), { force: true });
  return outcome(r, before, after, catchUp, held);
}

function subtract(a: HeldCounts, b: HeldCounts): HeldCounts {
  return a.map((x, i) => x - (b[i] ?? 0));
}

/** The sink's count of how long it held each message since the last SIGUSR2 (it prints it on SIGUSR1). */
function sinkHeld(proc: ChildProcess): Promise<HeldCounts> {
  return new Promise((res) => {
    let out = '';
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = /held (\[[\d,]*\])\n/.exec(out);
      if (!m) return;
      proc.stdout?.off('data', onData);
      res(JSON.parse(m[1] as string) as HeldCounts);
    };
    proc.stdout?.on('data', onData);
    proc.kill('SIGUSR1');
  });
}

/** The bare sink; `flushing`: the sink that makes each message durable in a file before it acks. */
async function againstSink(pairs: number, io: number, rate: number | null = null, flushing = false): Promise<Outcome> {
  const root = join(dir, 'sink');
  rmSync(root, { recursive: true, force: true });
  const init = initInstallation({ dir: root, port: 1, metricsPort: null, samplePairs: false });
  const port = 19600 + Math.floor(Math.random() * 300);
  // Kept from run to run (removed with the bench's folder): deleting a file
  // of a gigabyte leaves the filesystem work that the next run would meet.
  const log = flushing ? [join(dir, 'flushing-sink.log')] : [];
  const proc = spawn(...serverCommand([sinkScript, init.certPath, join(root, 'tls', 'agent.key'), String(port), ...log]), { stdio: ['ignore', 'pipe', 'inherit'] });
  await waitFor(proc, 'sink ready');
  const before = procStats(proc.pid as number);
  const warm = setTimeout(() => proc.kill('SIGUSR2'), 1000);
  const r = await simulate(`wss://127.0.0.1:${port}`, readFileSync(init.certPath), Buffer.from('x'), pairs, io, rate);
  clearTimeout(warm);
  const held = rate === null ? null : await sinkHeld(proc);
  const after = procStats(proc.pid as number);
  proc.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
  return outcome(r, before, after, 0, held);
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
  const where = values['targets-dir'] ? `in ${values['targets-dir']}` : 'on the retention filesystem';
  const state = freshTargets ? 'fresh and sparse (an initial copy: before-images are zeros)' : 'holding data (before-images are data)';
  console.log(`bench:ingest  ${new Date().toISOString()}  ${cpus().length} cpus (${cpus()[0]?.model ?? '?'}), ${seconds} s per case, medians of ${runs}; targets ${where}, ${state}`);
  const limit = measureRawAppend(dir, MiB, GiB, 8 * MiB).bytesPerSecond / MB;
  const flushMs = await flushLatencyMs();
  const applyLimits: number[] = [];
  for (let r = 0; r < runs; r++) applyLimits.push((await measureApplyPathLimit(dir, 4)).bytesPerSecond / MB);
  const applyLimit = median(applyLimits);
  console.log(`raw append limit ${limit.toFixed(0)} MB/s; flush latency (1 MiB O_DIRECT + fdatasync) ${flushMs.toFixed(2)} ms`);
  console.log(
    `apply path limit ${applyLimit.toFixed(0)} MB/s (${applyLimits.map((x) => x.toFixed(0)).join(' / ')}): the disk doing the agent's four passes per byte (ingest write, before-image read, undo write, target write) with no CPU of its own\n`,
  );
  const rows: string[][] = [['writes', 'pairs', 'agent MB/s', 'applied MB/s', 'sink MB/s', 'x sink', 'x limit', 'x apply limit', 'ack p50 ms*', 'ack p99 ms*', 'agent CPU %', 'sink CPU %', 'agent peak RSS']];
  const only = values.case ? /^(\d+)([km]):(\d+)$/i.exec(values.case) : null;
  if (values.case && !only) throw new Error(`--case ${values.case}: expected e.g. 64k:1 or 1m:8`);
  const sizes = only ? [Number(only[1]) * (only[2]?.toLowerCase() === 'm' ? MiB : KiB)] : values.quick ? [MiB, 64 * KiB] : [MiB, 64 * KiB, 4 * KiB];
  const pairCounts = only ? [Number(only[3])] : [1, 8];
  for (const io of sizes) {
    for (const pairs of pairCounts) {
      const agent: Outcome[] = [];
      const sink: Outcome[] = [];
      for (let r = 0; r < runs; r++) {
        sink.push(await againstSink(pairs, io));
        agent.push(await againstDaemon(pairs, io, null));
      }
      const m = (xs: Outcome[], k: keyof Outcome): number => median(xs.map((x) => x[k]));
      rows.push([
        formatBytes(io),
        String(pairs),
        m(agent, 'mbps').toFixed(0),
        m(agent, 'appliedMbps').toFixed(0),
        m(sink, 'mbps').toFixed(0),
        (m(agent, 'mbps') / m(sink, 'mbps')).toFixed(2),
        (m(agent, 'mbps') / limit).toFixed(2),
        (m(agent, 'mbps') / applyLimit).toFixed(2),
        m(agent, 'p50').toFixed(1),
        m(agent, 'p99').toFixed(1),
        m(agent, 'cpuPct').toFixed(0),
        m(sink, 'cpuPct').toFixed(0),
        `${(Math.max(...agent.map((a) => a.hwm)) / MiB).toFixed(0)} MiB`,
      ]);
    }
  }
  console.log(table(rows));
  console.log('* items sent after the first second of each run');
  console.log('applied MB/s: acked bytes over the run and the time the targets took to hold all of it after; peak RSS includes that time');
  if (freshTargets) console.log('the apply path limit is for before-images that are data; into fresh targets the undo log keeps a length for each, not bytes');
  if (only) return cleanUp();
  // Latency at half load: the rate of the 64 KiB, 1-pair case halved.
  // The sink at the same rate: the latency of the transport and the client alone.
  const full = await againstDaemon(1, 64 * KiB, null);
  const halves: Outcome[] = [];
  const sinkHalves: Outcome[] = [];
  const flushingHalves: Outcome[] = [];
  for (let r = 0; r < runs; r++) {
    flushingHalves.push(await againstSink(1, 64 * KiB, (full.mbps * MB) / 2, true));
    sinkHalves.push(await againstSink(1, 64 * KiB, (full.mbps * MB) / 2));
    halves.push(await againstDaemon(1, 64 * KiB, (full.mbps * MB) / 2));
  }
  const p = (xs: Outcome[], k: 'p50' | 'p99' | 'p99All' | 'heldP50' | 'heldP99'): number => median(xs.map((x) => x[k]));
  console.log(`\nat half load (64 KiB writes, 1 pair, ${(full.mbps / 2).toFixed(0)} MB/s), items sent after the first second:`);
  console.log(`  agent ack p50 ${p(halves, 'p50').toFixed(2)} ms, p99 ${p(halves, 'p99').toFixed(2)} ms = ${(p(halves, 'p99') / flushMs).toFixed(1)} x the flush latency`);
  console.log(`  sink  ack p50 ${p(sinkHalves, 'p50').toFixed(2)} ms, p99 ${p(sinkHalves, 'p99').toFixed(2)} ms (transport and client alone)`);
  console.log(
    `  flushing sink  ack p50 ${p(flushingHalves, 'p50').toFixed(2)} ms, p99 ${p(flushingHalves, 'p99').toFixed(2)} ms = ${(p(flushingHalves, 'p99') / flushMs).toFixed(1)} x the flush latency (each message written and flushed before its ack, nothing else: the floor for acking only what is durable)`,
  );
  console.log(`  whole run, start-up included: agent p99 ${p(halves, 'p99All').toFixed(2)} ms, sink p99 ${p(sinkHalves, 'p99All').toFixed(2)} ms, flushing sink p99 ${p(flushingHalves, 'p99All').toFixed(2)} ms`);
  console.log('  held by the server, from a message\'s arrival to its ack handed to the socket (no client, no transport; estimated from histogram buckets):');
  const heldLine = (xs: Outcome[]): string => `p50 ${p(xs, 'heldP50').toFixed(2)} ms, p99 ${p(xs, 'heldP99').toFixed(2)} ms = ${(p(xs, 'heldP99') / flushMs).toFixed(1)} x the flush latency`;
  console.log(`    agent ${heldLine(halves)}; flushing sink ${heldLine(flushingHalves)}; sink ${heldLine(sinkHalves)}`);
  const added = (base: Outcome[]): string => `${(p(halves, 'p99') - p(base, 'p99')).toFixed(2)} ms = ${((p(halves, 'p99') - p(base, 'p99')) / flushMs).toFixed(1)} x the flush latency`;
  console.log(`  added by the agent at p99: ${added(sinkHalves)} over the sink, ${added(flushingHalves)} over the flushing sink`);
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
