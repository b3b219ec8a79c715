// The retention volume filling up under a live stream, for real: an ext4
// volume on a loop device (root only; skipped where one cannot be mounted),
// filled by another file as an operator's copy would. The agent refuses with
// retention-full (after shortening history, where it has any to drop), loses
// nothing it acknowledged, keeps answering, and takes the stream back once
// room is freed. Shortening history for space is tested in
// test/unit/retention/pruning.test.ts.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Simulator } from '../../src/simulator/simulator';
import { checkPoint, choosePoints, oldestRetainedSeq } from '../../src/simulator/verify';
import { MAIN, RunningDaemon, cli, makeInstallation } from '../helpers/daemon';
import { canMountScratchVolumes, mountScratchVolume } from '../helpers/loop-volume';

const MiB = 1024 * 1024;
const DISK = 32 * MiB;
const SPACE_WAIT_MS = 3000;
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function freeBytes(path: string): number {
  const s = statfsSync(path);
  return s.bavail * s.bsize;
}

interface StatusJson {
  retention: { healthy: boolean; problems: string[] };
  pairs: Array<{ pair: string; state: string; durableSeq: number; appliedSeq: number; lastError: string | null }>;
}

async function status(configPath: string): Promise<StatusJson> {
  const r = await cli(['status', '--config', configPath, '--json']);
  if (r.code !== 0) throw new Error(`status failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as StatusJson;
}

describe.runIf(canMountScratchVolumes())('a retention volume that fills up', () => {
  it('refuses with retention-full, keeps every acknowledged item, answers at once while full, and resumes when room is freed', async () => {
    const volume = mountScratchVolume(384 * MiB);
    try {
      const root = mkdtempSync(join(tmpdir(), 'mtagent-full-'));
      roots.push(root);
      const configPath = await makeInstallation(root, [{ id: 'p', sizeBytes: DISK }], { retentionPath: join(volume.path, 'retention') });
      const daemon = new RunningDaemon(configPath);
      await daemon.start({
        MTAGENT_TUNING: JSON.stringify({ ingestSegmentBytes: 8 * MiB, undoSegmentBytes: 8 * MiB, cycleBytes: MiB, reserveBytes: 16 * MiB, spaceWaitMs: SPACE_WAIT_MS }),
      });

      const said: string[] = [];
      const sim = new Simulator({
        client: daemon.clientOptions(),
        pairs: [{ id: 'p', diskBytes: DISK }],
        workload: 'random',
        ioBytes: 64 * 1024,
        rateBytesPerSecond: 16 * MiB,
        durationSeconds: null,
        items: null,
        tagEvery: 20,
        group: null,
        tickSeconds: 1,
        seed: 3,
        messageBytes: 256 * 1024,
        reconnect: true,
        log: (line) => said.push(line),
      });
      const running = sim.run();
      const pair = sim.pairs.get('p');
      if (!pair) throw new Error('no pair state');
      await until('400 items acknowledged', () => pair.ackedSeq >= 400, 30_000);

      // Somebody else's file takes all but 1 MiB of the volume.
      const filler = join(volume.path, 'filler');
      execFileSync('fallocate', ['-l', String(freeBytes(volume.path) - MiB), filler]);
      const refusals = (): number => said.filter((l) => l.includes('retention-full')).length;
      await until('the first retention-full', () => refusals() >= 1, 60_000);
      const ackedWhenFull = pair.ackedSeq;

      // While it stays full, every reopen is refused at once, not after another wait for room.
      const counted = refusals();
      await new Promise((r) => setTimeout(r, 2 * SPACE_WAIT_MS));
      expect(refusals() - counted).toBeGreaterThanOrEqual(4);
      expect(pair.ackedSeq).toBe(ackedWhenFull);
      const full = await status(configPath);
      expect(full.retention.healthy).toBe(false);
      expect(full.pairs[0]).toMatchObject({ pair: 'p', state: 'error', durableSeq: ackedWhenFull });
      expect(full.pairs[0]?.lastError).toMatch(/retention volume has \d+ of \d+ bytes free and no history left to drop/);
      expect(daemon.output).toMatch(/"code":"retention-full"/);
      // Applying paused too (no room for the next undo segment): what is not on the target is named, not waited for.
      const applied = full.pairs[0]?.appliedSeq ?? 0;
      expect(applied).toBeLessThan(ackedWhenFull);
      const pts = await cli(['points', 'p', '--config', configPath, '--json']);
      expect(JSON.parse(pts.stdout)).toMatchObject({ latest: { seq: applied }, notApplied: { fromSeq: applied + 1, toSeq: ackedWhenFull, reason: expect.stringMatching(/retention volume/) } });
      const refusedAt = Date.now();
      const latest = await cli(['recover', 'p', '--at', 'latest', '--out', join(root, 'latest.img'), '--config', configPath]);
      expect(latest.code).toBe(1);
      expect(latest.stderr).toMatch(new RegExp(`latest \\(seq ${ackedWhenFull}\\) of p is durable but not on the target yet, and applying is paused`));
      expect(Date.now() - refusedAt).toBeLessThan(10_000);

      // Room again: the stream goes on where it stopped and the applier catches up.
      rmSync(filler);
      await until('the stream to go on', () => pair.ackedSeq >= ackedWhenFull + 150, 60_000);
      sim.stop();
      const report = await running;
      expect(report.pairs[0]?.ackedSeq).toBe(sim.model('p').lastSeq);
      expect(daemon.alive).toBe(true);
      await until(
        'the target to catch up',
        async () => {
          const p = (await status(configPath)).pairs[0];
          return p !== undefined && p.appliedSeq === p.durableSeq && p.lastError === null;
        },
        30_000,
      );

      // Nothing acknowledged is lost, and the history kept rebuilds exactly.
      const c = await daemon.client({ processServerId: 'ps-final' });
      expect((await c.open('p', DISK)).durableSeq).toBe(sim.model('p').lastSeq);
      await c.close();
      const cliArgs = [process.execPath, MAIN];
      const oldest = await oldestRetainedSeq(cliArgs, configPath, 'p');
      for (const pt of choosePoints(sim.model('p'), 4, 5, oldest)) {
        const check = await checkPoint(cliArgs, configPath, sim.model('p'), pt.point, pt.seq);
        expect(check.error, pt.point).toBeNull();
      }
      expect(await daemon.stop()).toBe(0);
    } finally {
      volume.remove();
    }
  }, 180_000);
});
