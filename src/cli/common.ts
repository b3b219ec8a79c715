// What the commands share: loading the config, reaching the agent (daemon or
// offline), printing, progress bars, and exit codes (0 ok, 1 failed, 2 usage).
import { existsSync } from 'node:fs';
import { delimiter, isAbsolute, join, relative } from 'node:path';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig, type AgentConfig } from '../config/load';
import { callDaemon } from '../control/socket';
import { runOperation, type AgentContext, type Progress } from '../control/operations';
import { Engine } from '../engine/engine';
import { MtagentError } from '../errors';
import { silentLogger } from '../log';
import { engineOptionsFor } from '../app/daemon';
import { packageRoot } from '../package-root';

/**
 * How to run this command again from where the user is: `mtagent` when it is
 * on the PATH (installed), a release's own bin/mtagent, `npx mtagent` in a
 * clone where npx is there, else node and the path to this program.
 */
export function howToRun(): string {
  const onPath = (name: string): boolean => (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, name)));
  if (onPath('mtagent')) return 'mtagent';
  const releaseCommand = join(packageRoot, 'bin', 'mtagent');
  if (existsSync(releaseCommand)) return releaseCommand;
  const rel = relative(packageRoot, process.cwd());
  if (!rel.startsWith('..') && !isAbsolute(rel) && onPath('npx')) return 'npx mtagent';
  return `${process.execPath} ${join(packageRoot, 'dist', 'src', 'cli', 'main.js')}`;
}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** Errors that mean the command was asked wrongly, not that it failed. */
const USAGE_CODES = new Set(['config-invalid', 'bad-usage', 'bad-point', 'unknown-group', 'init-exists', 'retention-missing']);

export class UsageError extends MtagentError {
  constructor(message: string) {
    super('bad-usage', message);
  }
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof ConfigError) return EXIT_USAGE;
  if (err instanceof MtagentError && USAGE_CODES.has(err.code)) return EXIT_USAGE;
  return EXIT_FAILED;
}

/** One line on stderr naming what is wrong and what to do. */
export function reportError(err: unknown): number {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`mtagent: ${message.split('\n')[0]}\n`);
  return exitCodeFor(err);
}

export function configFrom(opts: { config?: string }): AgentConfig {
  return loadConfig(opts.config ?? process.env.MTAGENT_CONFIG ?? DEFAULT_CONFIG_PATH);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A progress bar on a terminal; nothing when output is piped. */
export function progressBar(label: string): { progress: Progress; stop: () => void } {
  if (!process.stderr.isTTY) return { progress: () => undefined, stop: () => undefined };
  // Loaded here, not at start: the daemon has no use for it in its heap.
  const { SingleBar, Presets } = require('cli-progress') as typeof import('cli-progress');
  const bar = new SingleBar({ format: `${label} {phase} [{bar}] {percentage}% {value}/{total} MiB`, stream: process.stderr, hideCursor: true }, Presets.shades_classic);
  let started = false;
  let phase = '';
  return {
    progress: (p, done, total) => {
      const t = Math.max(1, Math.round(total / 1048576));
      const d = Math.round(done / 1048576);
      if (!started || p !== phase) {
        if (started) bar.stop();
        bar.start(t, d, { phase: p.padEnd(8) });
        started = true;
        phase = p;
      } else bar.update(d);
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

/**
 * One line of progress on a terminal, rewritten in place; nothing when
 * stderr is not one. `say` prints a line of its own above it.
 */
export function statusLine(): { show: (text: string) => void; say: (text: string) => void; clear: () => void } {
  const tty = process.stderr.isTTY === true;
  let shown = false;
  const clear = (): void => {
    if (shown) process.stderr.write('\r\x1b[K');
    shown = false;
  };
  return {
    show: (text) => {
      if (!tty) return;
      const width = process.stderr.columns ?? 120;
      process.stderr.write(`\r\x1b[K${text.length > width - 1 ? `${text.slice(0, width - 2)}…` : text}`);
      shown = true;
    },
    say: (text) => {
      clear();
      process.stderr.write(`${text}\n`);
    },
    clear,
  };
}

/**
 * Runs an operation through the daemon when it runs, else in this process on
 * the retention volume (taking its lock, recovering after any crash first).
 */
export async function withAgent(config: AgentConfig, op: string, args: Record<string, unknown>, progress?: Progress, signal?: AbortSignal): Promise<unknown> {
  const viaDaemon = await callDaemon(config.dataDir, op, args, progress, signal);
  if (viaDaemon !== undefined) return viaDaemon.result;
  const engine = await Engine.open({ ...engineOptionsFor(config, silentLogger()), pruneIntervalMs: 3_600_000 });
  try {
    const ctx: AgentContext = { engine, agentId: config.agentId, startedAt: new Date(), processServers: () => [], heartbeat: () => null, tests: null };
    return await runOperation(ctx, false, op, args, progress, signal);
  } finally {
    await engine.close();
  }
}

/** What Ctrl-C ends: the exit code for an interrupted command (128 + SIGINT). */
export const EXIT_INTERRUPTED = 130;

/**
 * Ctrl-C (SIGINT) cancels the work where it runs, in the daemon or here,
 * instead of killing the command half-way: the work stops and cleans up, and
 * the command says so and exits 130. A second Ctrl-C exits at once.
 */
export function cancelOnInterrupt(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const onInterrupt = (): void => {
    if (controller.signal.aborted) process.exit(EXIT_INTERRUPTED);
    controller.abort();
  };
  process.on('SIGINT', onInterrupt);
  return { signal: controller.signal, dispose: () => process.off('SIGINT', onInterrupt) };
}

/** Whether `err` is the end of work the user cancelled. */
export function wasCancelled(err: unknown, signal: AbortSignal): boolean {
  return signal.aborted && (err instanceof MtagentError ? err.code === 'cancelled' : true);
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

/** Parses 64k, 1M, 10G (binary units) or a plain number of bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB])?$/.exec(text.trim());
  if (!m) throw new UsageError(`bad size ${text}: use a number with an optional k, M, G or T`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[(m[2] ?? '').toLowerCase()] ?? 1;
  return Math.round(Number(m[1]) * mult);
}

/** Parses 90, 90s, 10m, 2h into seconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h)?$/.exec(text.trim());
  if (!m) throw new UsageError(`bad duration ${text}: use seconds, or 10m, 2h`);
  return Number(m[1]) * ({ s: 1, m: 60, h: 3600 }[m[2] ?? 's'] ?? 1);
}
