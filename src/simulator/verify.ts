// `mtagent simulate --verify`: pick recovery points, rebuild each through the
// agent's own CLI, and compare its SHA-256 with the simulator's model.
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadConfig } from '../config/load';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { SourceModel } from './model';
import { rng } from './workload';

const run = promisify(execFile);

export interface PointCheck {
  pair: string;
  point: string;
  seq: number;
  expected: string;
  actual: string | null;
  ok: boolean;
  error: string | null;
}

/** The points worth checking: latest, latest-app, and random seqs outside resync windows. */
export function choosePoints(model: SourceModel, count: number, seed: number, oldestSeq = 0): Array<{ point: string; seq: number }> {
  const out: Array<{ point: string; seq: number }> = [{ point: 'latest', seq: model.lastSeq }];
  const app = model.latestApp();
  if (app && app.seq >= oldestSeq) out.push({ point: 'latest-app', seq: app.seq });
  const r = rng(seed);
  for (let tries = 0; out.length < count && tries < count * 20; tries++) {
    const seq = oldestSeq + 1 + Math.floor(r() * Math.max(1, model.lastSeq - oldestSeq));
    if (seq > model.lastSeq || model.inResync(seq) || out.some((p) => p.seq === seq)) continue;
    out.push({ point: `seq:${seq}`, seq });
  }
  return out.slice(0, Math.max(count, 1));
}

/**
 * The oldest seq the agent still holds for a pair (`mtagent points … --json`):
 * history shortened for space or time is not there to check.
 */
export async function oldestRetainedSeq(cli: string[], configPath: string, pairId: string): Promise<number> {
  const { stdout } = await run(cli[0] as string, [...cli.slice(1), 'points', pairId, '--config', configPath, '--json']);
  const r = JSON.parse(stdout) as { oldest: { seq: number } | null; latest: { seq: number } };
  return r.oldest?.seq ?? r.latest.seq;
}

/**
 * Where a rebuilt image goes: the agent writes it (through the daemon, as its
 * own user, which the unit lets write in dataDir), so a folder in dataDir
 * given to that user; a temporary folder where there is no dataDir.
 */
function imageDir(configPath: string): string {
  let dataDir: string | null = null;
  try {
    dataDir = loadConfig(configPath).dataDir;
  } catch {
    // No readable config: the command will say why.
  }
  if (dataDir === null || !existsSync(dataDir)) return mkdtempSync(join(tmpdir(), 'mtagent-verify-'));
  const dir = mkdtempSync(join(dataDir, 'verify-'));
  const owner = statSync(dataDir);
  if (process.getuid?.() === 0 && owner.uid !== 0) chownSync(dir, owner.uid, owner.gid);
  return dir;
}

/** Rebuilds one point with `mtagent recover … --json` and compares hashes. */
export async function checkPoint(cli: string[], configPath: string, model: SourceModel, point: string, seq: number): Promise<PointCheck> {
  const dir = imageDir(configPath);
  const expected = model.sha256At(seq);
  try {
    const { stdout } = await run(cli[0] as string, [...cli.slice(1), 'recover', model.pairId, '--at', point, '--out', join(dir, 'image.img'), '--config', configPath, '--json'], {
      maxBuffer: 16 * 1024 * 1024,
    });
    const r = JSON.parse(stdout) as { seq: number; sha256: string };
    const ok = r.seq === seq && r.sha256 === expected;
    return { pair: model.pairId, point, seq, expected, actual: r.sha256, ok, error: ok ? null : r.seq !== seq ? `rebuilt seq ${r.seq}, expected ${seq}` : 'SHA-256 differs from the model' };
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return { pair: model.pairId, point, seq, expected, actual: null, ok: false, error: (e.stderr ?? e.message).trim().split('\n')[0] ?? 'failed' };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
