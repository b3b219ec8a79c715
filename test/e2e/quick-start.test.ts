// The README's quick start, as a new user runs it: `mtagent start` on a new
// installation, the simulator command it prints, `status`; then the same
// simulator command again, as a process server that restarted would stream.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { packageRoot } from '../../src/package-root';
import { MAIN, cli, freePort } from '../helpers/daemon';

const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

interface StatusPair {
  pair: string;
  state: string;
  why: string | null;
}

describe('the quick start', () => {
  it('ends with every sample pair protected, and its simulator command can be run again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mtagent-quick-'));
    roots.push(dir);
    const home = join(dir, 'mtagent-home');
    expect((await cli(['init', '--dir', home, '--port', String(await freePort()), '--no-metrics'])).code).toBe(0);
    // From the clone, as `npm start` runs it: the commands it prints are for there.
    const start = spawn(process.execPath, [MAIN, 'start', '--dir', home], { stdio: ['ignore', 'ignore', 'pipe'], cwd: packageRoot });
    let said = '';
    start.stderr.on('data', (d: Buffer) => (said += d.toString()));
    try {
      await vi.waitFor(() => expect(said).toMatch(/stream into it: {2}npx mtagent (simulate .*)\n/), { timeout: 20_000, interval: 50 });
      const printed = (/stream into it: {2}npx mtagent (simulate .*)\n/.exec(said)?.[1] ?? '').split(' ');
      // The printed command, shortened to a few seconds; its config path is relative to the clone.
      const command = printed.map((a, i) => (printed[i - 1] === '--duration' ? '4' : a));
      const before = await statusOf(home);
      expect(before.every((p) => p.state === 'unprotected' && /initial copy/.test(p.why ?? ''))).toBe(true);

      const first = await cli(command);
      expect(first.code, `${first.stderr}${first.stdout}`).toBe(0);
      expect(first.stderr).toMatch(/is new to the agent: initial copy/);
      expect(first.stdout).toMatch(/verify: \d+ passed, 0 failed/);
      expect(await statusOf(home)).toEqual(before.map((p) => ({ pair: p.pair, state: 'protected', why: null })));
      // The README's group recovery, on what that command streamed.
      const restored = join(dir, 'restored');
      const group = await cli(['recover', '--group', 'vm1', '--at', 'latest-app', '--out', restored, '--config', join(home, 'agent.yaml')]);
      expect(group.code, group.stderr).toBe(0);
      expect(group.stdout).toMatch(/^vm1-disk0 seq \d+ .*vm1-disk0\.img sha256 [0-9a-f]{64}\nvm1-disk1 seq \d+ .*vm1-disk1\.img sha256 [0-9a-f]{64}\n$/);

      const second = await cli(command);
      expect(second.code, `${second.stderr}${second.stdout}`).toBe(0);
      expect(second.stderr).toMatch(/taking the pair over with a delta resync/);
      expect(second.stdout).toMatch(/verify: \d+ passed, 0 failed/);
      expect((await statusOf(home)).map((p) => p.state)).toEqual(before.map(() => 'protected'));
    } finally {
      start.kill('SIGTERM');
      await new Promise((r) => start.once('exit', r));
    }
  }, 180_000);
});

async function statusOf(home: string): Promise<StatusPair[]> {
  const r = await cli(['status', '--config', join(home, 'agent.yaml'), '--json']);
  return (JSON.parse(r.stdout) as { pairs: StatusPair[] }).pairs.map((p) => ({ pair: p.pair, state: p.state, why: p.why }));
}
