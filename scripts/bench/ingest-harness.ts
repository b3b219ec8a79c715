// What bench:ingest's suites share: the spawned daemon (an installation with
// its pairs, its metrics, its control socket), the bare sink, a process's CPU
// and peak RSS, and the targets' catch-up after a run.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initInstallation } from '../../src/config/init';
import { callDaemon } from '../../src/control/socket';
import type { StatusReport } from '../../src/control/operations';
import { ACK_LATENCY_BUCKETS } from '../../src/metrics/server';
import { DAEMON_NODE_FLAGS } from '../../src/server/node-flags';
import { freePort } from '../free-port';

export interface HarnessOptions {
  /** Where installations go (the retention filesystem). */
  dir: string;
  /** The server on CPU 1 (taskset), the client staying on CPU 0. */
  pin: boolean;
  /** A folder for a V8 CPU profile of each daemon run (node --cpu-prof). */
  profileDir: string | null;
}

const scripts = join(__dirname, '..');
const MAIN = join(scripts, '..', 'src', 'cli', 'main.js');

export function pinClient(): void {
  execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
}

function serverCommand(o: HarnessOptions, args: string[]): [string, string[]] {
  return o.pin ? ['taskset', ['-c', '1', process.execPath, ...args]] : [process.execPath, args];
}

export function waitForOutput(proc: ChildProcess, text: string): Promise<void> {
  return new Promise((res, rej) => {
    let out = '';
    const t = setTimeout(() => rej(new Error(`not ready: ${out}`)), 30_000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (!out.includes(text)) return;
      clearTimeout(t);
      proc.stdout?.off('data', onData);
      res();
    };
    proc.stdout?.on('data', onData);
    proc.once('exit', (c) => rej(new Error(`exited ${c}: ${out}`)));
  });
}

/** utime+stime in seconds, and VmHWM (peak RSS) in bytes, of a process. */
export function procStats(pid: number): { cpu: number; hwm: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  const cpu = (Number(stat[11]) + Number(stat[12])) / 100;
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  return { cpu, hwm };
}

export interface BenchPair {
  id: string;
  target: string;
  sizeBytes: number;
}

/** Every sample of a metrics scrape, by name with its labels as Prometheus writes them (`name{label="x"}`). */
export type Scrape = Map<string, number>;

export function scrapeDelta(after: Scrape, before: Scrape, key: string): number {
  return (after.get(key) ?? 0) - (before.get(key) ?? 0);
}

/** Messages per ack latency bucket (ACK_LATENCY_BUCKETS, and one above them), between two scrapes. */
export function heldCounts(after: Scrape, before: Scrape): number[] {
  const cumulative = [...ACK_LATENCY_BUCKETS.map(String), '+Inf'].map((le) => scrapeDelta(after, before, `mtagent_ack_latency_seconds_bucket{le="${le}"}`));
  return cumulative.map((c, i) => c - (i === 0 ? 0 : (cumulative[i - 1] as number)));
}

/** The daemon run by the benchmark: a fresh installation with `pairs`, metrics on. */
export class BenchDaemon {
  private proc: ChildProcess | null = null;
  readonly root: string;
  readonly port: number;
  readonly metricsPort: number;
  readonly configPath: string;
  readonly certPath: string;
  readonly passphrase: Buffer;

  private constructor(
    private readonly o: HarnessOptions,
    init: { root: string; port: number; metricsPort: number; configPath: string; certPath: string },
  ) {
    this.root = init.root;
    this.port = init.port;
    this.metricsPort = init.metricsPort;
    this.configPath = init.configPath;
    this.certPath = init.certPath;
    this.passphrase = Buffer.from(readFileSync(join(init.root, 'passphrase'), 'utf8').trim());
  }

  static async create(o: HarnessOptions, pairs: readonly BenchPair[], name = 'install'): Promise<BenchDaemon> {
    const root = join(o.dir, name);
    rmSync(root, { recursive: true, force: true });
    const port = await freePort();
    const metricsPort = await freePort();
    const init = initInstallation({ dir: root, port, metricsPort, samplePairs: false });
    const list = pairs.map((p) => `  - { id: ${p.id}, target: ${p.target}, sizeBytes: ${p.sizeBytes} }`).join('\n');
    writeFileSync(init.configPath, readFileSync(init.configPath, 'utf8').replace('pairs: []', `pairs:\n${list}`));
    return new BenchDaemon(o, { root, port, metricsPort, configPath: init.configPath, certPath: init.certPath });
  }

  get url(): string {
    return `wss://127.0.0.1:${this.port}`;
  }

  get ca(): Buffer {
    return readFileSync(this.certPath);
  }

  get pid(): number {
    if (this.proc?.pid === undefined) throw new Error('the daemon is not running');
    return this.proc.pid;
  }

  async start(): Promise<void> {
    const profile = this.o.profileDir ? ['--cpu-prof', '--cpu-prof-dir', this.o.profileDir] : [];
    const proc = spawn(...serverCommand(this.o, [...DAEMON_NODE_FLAGS, ...profile, MAIN, 'run', '--config', this.configPath]), { stdio: ['ignore', 'pipe', 'inherit'] });
    this.proc = proc;
    await waitForOutput(proc, '"mtagent running"');
    // Its log is not read after start-up, but must be drained.
    proc.stdout?.resume();
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    const exited = new Promise((res) => proc.once('exit', res));
    proc.kill('SIGTERM');
    await exited;
  }

  async scrape(): Promise<Scrape> {
    const text = await (await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`)).text();
    const out: Scrape = new Map();
    for (const line of text.split('\n')) {
      if (!line.startsWith('mtagent_')) continue;
      const i = line.lastIndexOf(' ');
      out.set(line.slice(0, i), Number(line.slice(i + 1)));
    }
    return out;
  }

  async status(): Promise<StatusReport> {
    const reply = await callDaemon(join(this.root, 'data'), 'status', {});
    if (reply === undefined) throw new Error('the daemon stopped answering on its control socket');
    return reply.result as StatusReport;
  }

  /** Waits until every pair's target holds all that is durable (asked every 20 ms); returns how long that took. */
  async catchUpSeconds(limitSeconds = 600): Promise<number> {
    const start = performance.now();
    for (;;) {
      const { pairs } = await this.status();
      if (pairs.every((p) => p.appliedSeq >= p.durableSeq)) return (performance.now() - start) / 1000;
      if (performance.now() - start > limitSeconds * 1000) throw new Error(`the targets did not catch up within ${limitSeconds} s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** The bare sink (bench-sink.js): parses and acks; given a file, flushes each message there first. */
export class BenchSink {
  private constructor(
    private readonly proc: ChildProcess,
    readonly url: string,
    readonly ca: Buffer,
    private readonly root: string,
  ) {}

  static async start(o: HarnessOptions, flushFile: string | null = null): Promise<BenchSink> {
    const root = join(o.dir, 'sink');
    rmSync(root, { recursive: true, force: true });
    const init = initInstallation({ dir: root, port: 1, metricsPort: null, samplePairs: false });
    const port = await freePort();
    const args = [join(scripts, 'bench-sink.js'), init.certPath, join(root, 'tls', 'agent.key'), String(port), ...(flushFile ? [flushFile] : [])];
    const proc = spawn(...serverCommand(o, args), { stdio: ['ignore', 'pipe', 'inherit'] });
    await waitForOutput(proc, 'sink ready');
    return new BenchSink(proc, `wss://127.0.0.1:${port}`, readFileSync(init.certPath), root);
  }

  get pid(): number {
    return this.proc.pid as number;
  }

  /** Starts the count of how long messages are held again. */
  restartHeldCount(): void {
    this.proc.kill('SIGUSR2');
  }

  /** How long the sink held each message since the last restart of the count (it prints it on SIGUSR1). */
  held(): Promise<number[]> {
    return new Promise((res) => {
      let out = '';
      const onData = (d: Buffer): void => {
        out += d.toString();
        const m = /held (\[[\d,]*\])\n/.exec(out);
        if (!m) return;
        this.proc.stdout?.off('data', onData);
        res(JSON.parse(m[1] as string) as number[]);
      };
      this.proc.stdout?.on('data', onData);
      this.proc.kill('SIGUSR1');
    });
  }

  stop(): void {
    this.proc.kill('SIGKILL');
    rmSync(this.root, { recursive: true, force: true });
  }
}
