// npm run soak -- [--duration 10m] [--pairs 4] [--workload mixed] [--faults all|none|kill,drop,…]
//                 [--seed 1] [--rate 8M] [--verify-every 60] [--dir soak-tmp] [--keep]
//
// The daemon on a fresh installation, a simulator streaming into several
// pairs (two of them a replication group), faults injected at seeded random
// times, recovery points rebuilt and checked against the simulator's model,
// and the daemon's RSS, CPU, descriptors and RPO sampled. Ends with a
// summary and `N passed, N failed`; exits 1 on any failure.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { initInstallation } from '../src/config/init';
import { crc32c } from '../src/native';
import { encodeRecords } from '../src/protocol/records';
import { Simulator } from '../src/simulator/simulator';
import { checkPoint, oldestRetainedSeq, type PointCheck } from '../src/simulator/verify';
import { rng, WORKLOADS, type WorkloadName } from '../src/simulator/workload';
import { table } from '../src/text';
import { DAEMON_NODE_FLAGS } from '../src/server/node-flags';
import { scriptArgs } from './script-args';

const FAULTS = ['kill', 'drop', 'corrupt', 'target', 'resync', 'hup', 'retention'] as const;
type Fault = (typeof FAULTS)[number];
const MiB = 1024 * 1024;

const values = scriptArgs(__filename, {
  duration: { type: 'string', default: '10m' },
  pairs: { type: 'string', default: '4' },
  workload: { type: 'string', default: 'mixed' },
  faults: { type: 'string', default: 'all' },
  seed: { type: 'string', default: '1' },
  rate: { type: 'string', default: '8M' },
  'verify-every': { type: 'string', default: '60' },
  'fault-every': { type: 'string', default: '15' },
  dir: { type: 'string', default: 'soak-tmp' },
  keep: { type: 'boolean', default: false },
});

function parseTime(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h)?$/.exec(s);
  if (!m) throw new Error(`bad duration ${s}`);
  return Number(m[1]) * ({ s: 1, m: 60, h: 3600 }[m[2] ?? 's'] ?? 1);
}
function parseSize(s: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(s);
  if (!m) throw new Error(`bad size ${s}`);
  return Number(m[1]) * ({ '': 1, k: 1024, m: MiB, g: 1024 * MiB }[(m[2] ?? '').toLowerCase()] ?? 1);
}

const durationS = parseTime(values.duration);
const pairCount = Math.max(2, Number(values.pairs));
const seed = Number(values.seed);
const workload = values.workload as WorkloadName;
if (!WORKLOADS.includes(workload)) throw new Error(`--workload must be one of ${WORKLOADS.join(', ')}`);
const faults: Fault[] = values.faults === 'all' ? [...FAULTS] : values.faults === 'none' ? [] : (values.faults.split(',') as Fault[]);
const dir = resolve(values.dir);
const main = join(__dirname, '..', 'src', 'cli', 'main.js');
const random = rng(seed);
const t0 = Date.now();
const stamp = (): string => `${((Date.now() - t0) / 1000).toFixed(1).padStart(7)}s`;
const log = (line: string): void => void process.stdout.write(`${stamp()}  ${line}\n`);

// Small segments so that even a short soak rotates, recycles and prunes them.
const RETENTION_WINDOW_S = 30;
const TUNING = JSON.stringify({ ingestSegmentBytes: 16 * MiB, undoSegmentBytes: 8 * MiB, maxBatchBytes: 2 * MiB, cycleBytes: 2 * MiB, maxApplyLagBytes: 64 * MiB, pruneIntervalMs: 2000, targetRetryMs: 500 });

class Agent {
  proc: ChildProcess | null = null;
  /** Undo segments the agent dropped for falling out of the retention window (each recycled when the pair has no spare), over every run. */
  droppedForTime = 0;
  constructor(readonly configPath: string) {}
  async start(): Promise<void> {
    const proc = spawn(process.execPath, [...DAEMON_NODE_FLAGS, main, 'run', '--config', this.configPath], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MTAGENT_TUNING: TUNING } });
    this.proc = proc;
    if (proc.stdout) createInterface({ input: proc.stdout }).on('line', (line) => {
      if (line.includes('"history past the retention window dropped"')) this.droppedForTime++;
    });
    let out = '';
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`agent did not start: ${out}`)), 30_000);
      proc.stdout?.on('data', (d: Buffer) => {
        if (out.length < 1_000_000) out += d.toString();
        if (out.includes('"mtagent running"')) {
          clearTimeout(t);
          res();
        }
      });
      proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      proc.once('exit', (c) => rej(new Error(`agent exited ${c}: ${out.slice(-2000)}`)));
    });
    proc.removeAllListeners('exit');
  }
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return null;
    const exited = new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
    p.kill(signal);
    const code = await exited;
    this.proc = null;
    return code;
  }
  get pid(): number | null {
    return this.proc?.pid ?? null;
  }
}

function cliJson<T>(args: string[], configPath: string): Promise<T> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [main, ...args, '--config', configPath, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (c) => (c === 0 ? res(JSON.parse(out) as T) : rej(new Error(err.trim() || `exit ${c}`))));
  });
}

function maxRpoText(samples: readonly Sample[]): string {
  const worst = samples.reduce<Sample | null>((w, s) => (s.maxRpo !== null && (w === null || s.maxRpo > (w.maxRpo ?? 0)) ? s : w), null);
  return worst === null ? 'none sampled' : `${(worst.maxRpo ?? 0).toFixed(1)} s (${worst.maxRpoPair ?? '?'} at ${worst.t.toFixed(0)} s)`;
}

interface Sample {
  t: number;
  rss: number;
  cpu: number;
  fds: number;
  maxRpo: number | null;
  /** The pair with that RPO. */
  maxRpoPair: string | null;
}

/** An RPO sampled above this is logged where it happens, to be read beside the faults around it. */
const RPO_LOG_SECONDS = 5;

/** Target moves not yet undone: the final checks wait for them. */
const targetsAway = new Set<Promise<void>>();

async function main_(): Promise<number> {
  rmSync(dir, { recursive: true, force: true });
  const init = initInstallation({ dir, port: 19800 + Math.floor(random() * 100), metricsPort: null, samplePairs: false });
  const pairs = Array.from({ length: pairCount }, (_, i) => ({ id: `soak-${i}`, sizeBytes: (i === 0 ? 128 : 64) * MiB, group: i < 2 ? 'g' : null }));
  // The retention fault: a volume cap (history dropped for space) and a window of minutes (dropped for time, its segments recycled).
  const maxBytes = faults.includes('retention') ? 320 * MiB : null;
  const retentionSeconds = faults.includes('retention') ? RETENTION_WINDOW_S : 86_400;
  writeFileSync(
    init.configPath,
    readFileSync(init.configPath, 'utf8')
      .replace('pairs: []', `pairs:\n${pairs.map((p) => `  - { id: ${p.id}, target: datastore/${p.id}.img, sizeBytes: ${p.sizeBytes}${p.group ? `, group: ${p.group}` : ''} }`).join('\n')}`)
      .replace('maxBytes: null', `maxBytes: ${maxBytes ?? 'null'}`)
      .replace(/retentionSeconds: \d+/, `retentionSeconds: ${retentionSeconds}`),
  );
  const agent = new Agent(init.configPath);
  await agent.start();
  log(`agent started (${init.configPath}); ${pairCount} pairs, workload ${workload}, faults ${faults.join(',') || 'none'}, seed ${seed}, ${durationS} s`);

  let silences = 0;
  const sim = new Simulator({
    client: { url: `wss://127.0.0.1:${readFileSync(init.configPath, 'utf8').match(/port: (\d+)/)?.[1]}`, passphrase: Buffer.from(readFileSync(join(dir, 'passphrase'), 'utf8').trim()), processServerId: 'ps-soak', ca: readFileSync(init.certPath) },
    pairs: pairs.map((p) => ({ id: p.id, diskBytes: p.sizeBytes })),
    workload,
    ioBytes: 32 * 1024,
    rateBytesPerSecond: parseSize(values.rate),
    durationSeconds: durationS,
    items: null,
    tagEvery: 100,
    group: 'g',
    tickSeconds: 2,
    seed,
    messageBytes: 256 * 1024,
    reconnect: true,
    log: (line) => {
      // A live agent that leaves a request unanswered for 30 s has stalled: no fault here does that.
      if (line.includes('no answer from the agent')) silences++;
      log(`simulator: ${line}`);
    },
  });
  const running = sim.run();
  let simDone = false;
  void running.finally(() => (simDone = true)).catch(() => undefined);

  const faultCounts: Record<string, number> = {};
  const checks: PointCheck[] = [];
  let skipped = 0;
  const samples: Sample[] = [];
  let lastCpu = 0;
  let lastCpuAt = Date.now();
  let lastPid = 0;
  const end = t0 + durationS * 1000;
  let nextFault = Date.now() + 5_000 + random() * Number(values['fault-every']) * 1000;
  let nextVerify = Date.now() + Number(values['verify-every']) * 1000;
  let nextSample = Date.now();
  let hupPolicy = 900;

  // RPO is sampled only while the source writes: after the stream ends it is the time since the last item.
  const sample = async (withRpo = true): Promise<void> => {
    const pid = agent.pid;
    if (pid === null) return;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      const cpuS = (Number(stat[11]) + Number(stat[12])) / 100;
      const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
      const fds = readdirSync(`/proc/${pid}/fd`).length;
      const now = Date.now();
      // A restarted agent is a new process: its CPU time starts again.
      if (pid !== lastPid) {
        lastPid = pid;
        lastCpu = cpuS;
        lastCpuAt = now;
      }
      const elapsed = (now - lastCpuAt) / 1000;
      const cpu = elapsed >= 1 ? (100 * (cpuS - lastCpu)) / elapsed : null;
      if (cpu !== null) {
        lastCpu = cpuS;
        lastCpuAt = now;
      }
      const st = withRpo ? await cliJson<{ pairs: Array<{ pair: string; rpoSeconds: number | null }> }>(['status'], init.configPath).catch(() => null) : null;
      let worst: { pair: string; rpoSeconds: number } | null = null;
      for (const p of st?.pairs ?? []) if (p.rpoSeconds !== null && (worst === null || p.rpoSeconds > worst.rpoSeconds)) worst = { pair: p.pair, rpoSeconds: p.rpoSeconds };
      if (worst !== null && worst.rpoSeconds > RPO_LOG_SECONDS) log(`RPO ${worst.rpoSeconds.toFixed(1)} s on ${worst.pair}`);
      samples.push({ t: (now - t0) / 1000, rss, cpu: cpu ?? 0, fds, maxRpo: worst?.rpoSeconds ?? null, maxRpoPair: worst?.pair ?? null });
    } catch {
      // The agent may be between a kill and its restart.
    }
  };

  const inject = async (fault: Fault): Promise<void> => {
    faultCounts[fault] = (faultCounts[fault] ?? 0) + 1;
    const pairIdx = Math.floor(random() * pairCount);
    const pair = pairs[pairIdx] as { id: string };
    switch (fault) {
      case 'kill':
        log('fault: SIGKILL the agent, restart it');
        await agent.kill('SIGKILL');
        await agent.start();
        break;
      case 'drop':
        log('fault: drop the replication connection');
        sim.client?.terminate();
        break;
      case 'corrupt': {
        const st = sim.pairs.get(pair.id);
        if (!st || st.stream === null || !sim.client) break;
        log(`fault: a record with a bad crc on ${pair.id} (seq ${st.sentSeq + 1})`);
        const data = Buffer.alloc(4096, 0xee);
        const msg = encodeRecords([{ stream: st.stream, seq: st.sentSeq + 1, offset: 0, time: Date.now() * 1000, data }]);
        msg.writeUInt32LE((crc32c(data) ^ 0xffff) >>> 0, 28);
        sim.client.sendBinary(msg);
        break;
      }
      case 'target': {
        const path = join(dir, 'datastore', `${pair.id}.img`);
        if (!existsSync(path)) break;
        const away = Math.round(2000 + random() * 4000);
        log(`fault: target of ${pair.id} moved away for ${away} ms`);
        renameSync(path, `${path}.away`);
        const back = new Promise<void>((res) =>
          setTimeout(() => {
            renameSync(`${path}.away`, path);
            log(`fault: target of ${pair.id} back`);
            res();
          }, away),
        );
        targetsAway.add(back);
        void back.then(() => targetsAway.delete(back));
        break;
      }
      case 'resync':
        log(`fault: delta resync of ${pair.id}`);
        sim.requestResync(pair.id);
        break;
      case 'hup':
        hupPolicy = hupPolicy === 900 ? 600 : 900;
        log(`fault: SIGHUP with rpoThresholdSeconds ${hupPolicy}`);
        writeFileSync(init.configPath, readFileSync(init.configPath, 'utf8').replace(/rpoThresholdSeconds: \d+/, `rpoThresholdSeconds: ${hupPolicy}`));
        agent.proc?.kill('SIGHUP');
        break;
      case 'retention':
        // Retention is held at maxBytes for the whole run; this notes how far history has shrunk.
        log(`fault: retention capped at ${(maxBytes ?? 0) / MiB} MiB and ${RETENTION_WINDOW_S} s (history shortens as the run goes on)`);
        break;
    }
  };

  // A rebuild starts from the target, so none is asked for while a target is away:
  // it comes back, and the agent takes it up again (it retries every couple of seconds).
  const targetsBack = async (): Promise<void> => {
    if (targetsAway.size > 0) {
      log('waiting for the targets moved away to come back');
      await Promise.all(targetsAway);
    }
    for (let i = 0; i < 60; i++) {
      const st = await cliJson<{ pairs: Array<{ state: string }> }>(['status'], init.configPath).catch(() => null);
      if (st && st.pairs.every((p) => p.state !== 'target-unavailable' && p.state !== 'error')) break;
      await new Promise((r) => setTimeout(r, 500));
    }
  };

  const verify = async (): Promise<void> => {
    await targetsBack();
    const points = await cliJson<{ pairs: Array<{ pair: string }> }>(['status'], init.configPath).catch(() => null);
    if (!points) return;
    for (const p of pairs.slice(0, 3)) {
      const model = sim.model(p.id);
      const st = sim.pairs.get(p.id);
      if (!st || st.ackedSeq === 0) continue;
      const oldest = await oldestRetainedSeq([process.execPath, main], init.configPath, p.id).catch(() => 0);
      const candidates: Array<{ point: string; seq: number }> = [];
      const acked = st.ackedSeq;
      // Only what is acked is promised; the newest acked point outside resync windows.
      let latestOk = acked;
      while (latestOk > oldest && model.inResync(latestOk)) latestOk--;
      if (!model.inResync(acked)) candidates.push({ point: `seq:${acked}`, seq: acked });
      const app = model.latestApp(acked);
      if (app && app.seq >= oldest) candidates.push({ point: `tag:${app.name}`, seq: app.seq });
      // Random points from the newer half of what is retained: under retention pressure the older half may be gone by the time it is rebuilt.
      const from = oldest + Math.floor((latestOk - oldest) / 2);
      for (let i = 0; i < 2; i++) {
        const seq = from + 1 + Math.floor(random() * Math.max(1, latestOk - from));
        if (seq > acked || model.inResync(seq)) continue;
        const it = model.item(seq);
        // By time: the newest item at or before that item's time.
        let last = seq;
        while (last < acked && model.item(last + 1).time <= it.time) last++;
        if (model.inResync(last)) continue;
        candidates.push({ point: new Date(Math.floor(it.time / 1000)).toISOString().replace('Z', `${String(it.time % 1000).padStart(3, '0')}Z`), seq: last });
      }
      for (const c of candidates) {
        const r = await checkPoint([process.execPath, main], init.configPath, model, c.point, c.seq);
        if (!r.ok && /(before|outside) the retained history/.test(r.error ?? '')) {
          // Refused because history shortened past it meanwhile: right, if it really is older than the oldest now.
          const now = await oldestRetainedSeq([process.execPath, main], init.configPath, p.id).catch(() => null);
          if (now !== null && c.seq < now) {
            skipped++;
            log(`verify ${p.id} ${c.point} (seq ${c.seq}): skipped, pruned meanwhile (oldest is now seq ${now})`);
            continue;
          }
        }
        checks.push(r);
        log(`verify ${p.id} ${c.point} (seq ${c.seq}): ${r.ok ? 'ok' : `FAIL ${r.error}`}`);
      }
    }
  };

  while (Date.now() < end && !simDone) {
    const now = Date.now();
    if (now >= nextSample) {
      await sample();
      nextSample = now + 5000;
    }
    if (faults.length > 0 && now >= nextFault) {
      await inject(faults[Math.floor(random() * faults.length)] as Fault);
      nextFault = Date.now() + (0.5 + random()) * Number(values['fault-every']) * 1000;
    }
    if (now >= nextVerify) {
      await verify();
      nextVerify = Date.now() + Number(values['verify-every']) * 1000;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  log('streaming ends; waiting for every item to be acknowledged');
  const report = await running;
  await sample(false);
  // A fault still under way ends first.
  await targetsBack();

  // Final proof: every pair at its last acknowledged seq, and the group at its newest common group tag.
  for (const p of pairs) {
    const model = sim.model(p.id);
    const seq = model.lastSeq;
    if (seq === 0 || model.inResync(seq)) continue;
    const r = await checkPoint([process.execPath, main], init.configPath, model, 'latest', seq);
    checks.push(r);
    log(`final ${p.id} latest (seq ${seq}): ${r.ok ? 'ok' : `FAIL ${r.error}`}`);
  }
  const groupCheck = await (async (): Promise<PointCheck[]> => {
    const models = pairs.filter((p) => p.group === 'g').map((p) => sim.model(p.id));
    const tagsOf = (m: ReturnType<typeof sim.model>): Map<string, number> => {
      const out = new Map<string, number>();
      for (const it of m.items) if (it.kind === 'tag' && it.group && !m.inResync(it.seq)) out.set(it.group, it.seq);
      return out;
    };
    // Only tags still inside each pair's retained history can be a group point.
    const oldest = await Promise.all(models.map((m) => oldestRetainedSeq([process.execPath, main], init.configPath, m.pairId).catch(() => 0)));
    const maps = models.map((m, i) => new Map([...tagsOf(m)].filter(([, seq]) => seq >= (oldest[i] ?? 0))));
    const common = [...(maps[0]?.keys() ?? [])].filter((g) => maps.every((m) => m.has(g)));
    if (common.length === 0) return [];
    const newest = common.sort((a, b) => Number(a.split('-').pop()) - Number(b.split('-').pop())).pop() as string;
    const out = join(dir, 'group-out');
    try {
      const rs = await cliJson<Array<{ pair: string; seq: number; sha256: string }>>(['recover', '--group', 'g', '--at', 'latest-app', '--out', out, '--force'], init.configPath);
      return rs.map((r, i) => {
        const m = models.find((x) => x.pairId === r.pair) ?? (models[i] as (typeof models)[number]);
        const expectedSeq = maps[models.indexOf(m)]?.get(newest) as number;
        const expected = m.sha256At(expectedSeq);
        const ok = r.seq === expectedSeq && r.sha256 === expected;
        return { pair: r.pair, point: `group latest-app (${newest})`, seq: expectedSeq, expected, actual: r.sha256, ok, error: ok ? null : `rebuilt seq ${r.seq}, expected ${expectedSeq}` };
      });
    } catch (err) {
      return [{ pair: 'g', point: 'group latest-app', seq: 0, expected: '', actual: null, ok: false, error: err instanceof Error ? err.message : String(err) }];
    }
  })();
  for (const c of groupCheck) log(`final group ${c.pair} ${c.point}: ${c.ok ? 'ok' : `FAIL ${c.error}`}`);
  checks.push(...groupCheck);

  // Acknowledged items lost: what a fresh open reports against what was acked.
  const status = await cliJson<{ pairs: Array<{ pair: string; durableSeq: number }>; historyShortened: number }>(['status'], init.configPath);
  let lost = 0;
  for (const p of report.pairs) {
    const durable = status.pairs.find((x) => x.pair === p.pair)?.durableSeq ?? 0;
    if (durable < p.ackedSeq) lost += p.ackedSeq - durable;
  }
  const historyShortened = status.historyShortened;
  const exit = await agent.kill('SIGTERM');

  const third = Math.max(1, Math.floor(samples.length / 3));
  const avg = (xs: Sample[]): number => xs.reduce((n, s) => n + s.rss, 0) / Math.max(1, xs.length);
  const rssTrend = samples.length >= 3 ? (avg(samples.slice(-third)) - avg(samples.slice(0, third))) / MiB : 0;
  const failed = checks.filter((c) => !c.ok).length + (lost > 0 ? 1 : 0) + (exit === 0 ? 0 : 1) + (silences > 0 ? 1 : 0);
  const rows: string[][] = [
    ['measure', 'value'],
    ['duration', `${((Date.now() - t0) / 1000).toFixed(0)} s`],
    ['items acknowledged', String(report.itemsAcked)],
    ['bytes acknowledged', `${(report.bytesAcked / MiB).toFixed(0)} MiB`],
    ['reconnects', String(report.reconnects)],
    ['stream errors', Object.entries(report.streamErrors).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'],
    ['faults', Object.entries(faultCounts).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'],
    ['history shortened for space', `${historyShortened} times`],
    ['undo segments dropped for time', String(agent.droppedForTime)],
    ['delta resyncs', sim.resyncReports.length === 0 ? 'none' : `${sim.resyncReports.length}, ${sim.resyncReports.reduce((n, r) => n + r.differing, 0)} blocks differed of ${sim.resyncReports.reduce((n, r) => n + r.blocks, 0)}`],
    ['points verified', `${checks.length - checks.filter((c) => !c.ok).length} of ${checks.length}${skipped > 0 ? ` (${skipped} more pruned before they were rebuilt: refused, rightly)` : ''}`],
    ['acknowledged items lost', String(lost)],
    ['agent exit on SIGTERM', String(exit)],
    ['agent silent for 30 s on a live connection', `${silences} times`],
    ['peak RSS', `${(Math.max(0, ...samples.map((s) => s.rss)) / MiB).toFixed(0)} MiB`],
    ['RSS trend (last third - first third)', `${rssTrend >= 0 ? '+' : ''}${rssTrend.toFixed(0)} MiB`],
    ['peak CPU', `${Math.max(0, ...samples.map((s) => s.cpu)).toFixed(0)} %`],
    ['peak open descriptors', String(Math.max(0, ...samples.map((s) => s.fds)))],
    ['max RPO', maxRpoText(samples)],
    ['ack latency p50 / p99', `${report.ackLatencyMs.p50.toFixed(1)} / ${report.ackLatencyMs.p99.toFixed(1)} ms`],
  ];
  process.stdout.write(`\n${table(rows)}\n\n`);
  for (const c of checks.filter((x) => !x.ok)) process.stdout.write(`FAILED ${c.pair} ${c.point} (seq ${c.seq}): ${c.error}\n`);
  if (!values.keep) rmSync(dir, { recursive: true, force: true });
  const passedCount = checks.length - checks.filter((c) => !c.ok).length + (lost === 0 ? 1 : 0) + (exit === 0 ? 1 : 0) + (silences === 0 ? 1 : 0);
  process.stdout.write(`soak: ${passedCount} passed, ${failed} failed\n`);
  return failed === 0 ? 0 : 1;
}

main_().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
