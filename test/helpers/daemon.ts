// Spawns the real daemon (dist/, built by `npm test`'s pretest) on a fresh
// installation in a temp folder, and talks to it as a process server would.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { freePort } from '../../scripts/free-port';
import { join } from 'node:path';
import { initInstallation } from '../../src/config/init';
import { loadConfig, readPassphrase, type AgentConfig } from '../../src/config/load';
import { packageRoot } from '../../src/package-root';
import { ReplicationClient, type ClientOptions } from '../../src/simulator/client';
import { DAEMON_NODE_FLAGS } from '../../src/server/node-flags';

export const MAIN = join(packageRoot, 'dist', 'src', 'cli', 'main.js');

export { freePort };

export interface TestPair {
  id: string;
  sizeBytes: number;
  group?: string;
}

/**
 * A fresh installation with the given pairs; returns its config path. With
 * `retentionPath`, retention goes there (made if absent) instead of inside it;
 * with `metricsPort`, metrics are served there.
 */
export async function makeInstallation(dir: string, pairs: TestPair[], options: { retentionPath?: string; metricsPort?: number } = {}): Promise<string> {
  const port = await freePort();
  const r = initInstallation({ dir, port, metricsPort: options.metricsPort ?? null, samplePairs: false });
  let text = readFileSync(r.configPath, 'utf8').replace(
    'pairs: []',
    `pairs:\n${pairs.map((p) => `  - { id: ${p.id}, target: datastore/${p.id}.img, sizeBytes: ${p.sizeBytes}${p.group ? `, group: ${p.group}` : ''} }`).join('\n')}`,
  );
  if (options.retentionPath !== undefined) {
    mkdirSync(options.retentionPath, { recursive: true });
    text = text.replace('retention: { path: retention,', `retention: { path: ${options.retentionPath},`);
  }
  writeFileSync(r.configPath, text);
  return r.configPath;
}

/** A process's resident memory now (VmRSS), in bytes. */
export function rssOf(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
}

/** Samples a process's RSS every `everyMs` until stopped; `peak` is the most seen. */
export function sampleRss(pid: number, everyMs: number): { readonly peak: number; stop: () => void } {
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, rssOf(pid))), everyMs);
  return {
    get peak() {
      return peak;
    },
    stop: () => clearInterval(timer),
  };
}

/** Daemons still running after a test file (a test that failed half-way) are killed, not left behind. */
const running = new Set<ChildProcess>();
afterAll(() => {
  for (const p of running) p.kill('SIGKILL');
});

export class RunningDaemon {
  readonly configPath: string;
  readonly config: AgentConfig;
  proc: ChildProcess | null = null;
  output = '';

  constructor(configPath: string) {
    this.configPath = configPath;
    this.config = loadConfig(configPath);
  }

  get url(): string {
    return `wss://127.0.0.1:${this.config.listen.port}`;
  }

  clientOptions(extra: Partial<ClientOptions> = {}): ClientOptions {
    return { url: this.url, passphrase: readPassphrase(this.config), processServerId: 'ps-test', ca: readFileSync(this.config.tls.cert), ...extra };
  }

  async client(extra: Partial<ClientOptions> = {}): Promise<ReplicationClient> {
    const c = new ReplicationClient(this.clientOptions(extra));
    await c.connect();
    return c;
  }

  /** Starts `mtagent run` and resolves once it logs that it runs. */
  async start(env: NodeJS.ProcessEnv = {}): Promise<void> {
    this.output = '';
    const proc = spawn(process.execPath, [...DAEMON_NODE_FLAGS, MAIN, 'run', '--config', this.configPath], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    this.proc = proc;
    running.add(proc);
    proc.once('exit', () => running.delete(proc));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`daemon did not start:\n${this.output}`)), 20_000);
      const onData = (d: Buffer): void => {
        this.output += d.toString();
        if (this.output.includes('"mtagent running"')) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout?.on('data', onData);
      proc.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`daemon exited ${code}:\n${this.output}`));
      });
    });
  }

  /** SIGKILL: nothing is flushed, nothing cleaned up. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
    this.proc = null;
  }

  /** SIGTERM, and the exit code. */
  async stop(): Promise<number | null> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return p?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    p.kill('SIGTERM');
    const code = await exited;
    this.proc = null;
    return code;
  }

  get alive(): boolean {
    return this.proc !== null && this.proc.exitCode === null;
  }
}

/** Runs the CLI to completion, from the clone (paths in `args` may be relative to it). */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env }, cwd: packageRoot });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
