// A retention volume that fails under a live stream, for real: ext4 on a
// thin-provisioned loop device whose store runs out (root only; skipped where
// one cannot be mounted). Writes fail with I/O errors and ext4 goes
// read-only. The agent must stop on it, not refuse streams for ever, and once
// the disk is repaired every item it acknowledged must be there.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Simulator } from '../../src/simulator/simulator';
import { checkPoint } from '../../src/simulator/verify';
import { MAIN, RunningDaemon, makeInstallation } from '../helpers/daemon';
import { canMountScratchVolumes, mountThinVolume } from '../helpers/loop-volume';

const MiB = 1024 * 1024;
const DISK = 64 * MiB;
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

describe.runIf(canMountScratchVolumes())('a retention volume that fails', () => {
  it('stops the daemon with exit 1 naming the error, and after a repair every acknowledged item is there', async () => {
    // 512 MiB of filesystem over 96 MiB of real blocks.
    const volume = mountThinVolume(512 * MiB, 96 * MiB);
    try {
      const root = mkdtempSync(join(tmpdir(), 'mtagent-failing-'));
      roots.push(root);
      const configPath = await makeInstallation(root, [{ id: 'p', sizeBytes: DISK }], { retentionPath: join(volume.path, 'retention') });
      const tuning = { MTAGENT_TUNING: JSON.stringify({ ingestSegmentBytes: 8 * MiB, undoSegmentBytes: 8 * MiB, cycleBytes: MiB, reserveBytes: 8 * MiB }) };
      const daemon = new RunningDaemon(configPath);
      await daemon.start(tuning);
      const proc = daemon.proc;
      if (!proc) throw new Error('no daemon');
      const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));

      const sim = new Simulator({
        client: daemon.clientOptions(),
        pairs: [{ id: 'p', diskBytes: DISK }],
        workload: 'random',
        ioBytes: 64 * 1024,
        rateBytesPerSecond: 24 * MiB,
        durationSeconds: null,
        items: null,
        tagEvery: 25,
        group: null,
        tickSeconds: 1,
        seed: 9,
        messageBytes: 256 * 1024,
        reconnect: true,
        log: () => undefined,
      });
      const running = sim.run().catch(() => null);
      const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running after 90 s'), 90_000))]);
      expect(code).toBe(1);
      sim.stop();
      await running;
      const acked = sim.pairs.get('p')?.ackedSeq ?? 0;
      expect(acked).toBeGreaterThan(100);
      expect(daemon.output).toMatch(/"level":"fatal".*(EIO|EROFS)/);
      expect(daemon.output).toMatch(/exiting: the engine stopped on an error/);

      // The operator gives the store room and repairs the filesystem; the agent starts and reads its journal.
      volume.grow(640 * MiB);
      volume.repair();
      await daemon.start(tuning);
      const c = await daemon.client({ processServerId: 'ps-after' });
      expect((await c.open('p', DISK)).durableSeq).toBeGreaterThanOrEqual(acked);
      await c.close();
      const model = sim.model('p');
      for (const seq of [acked, Math.floor(acked / 2), Math.floor(acked * 0.9)]) {
        const check = await checkPoint([process.execPath, MAIN], configPath, model, `seq:${seq}`, seq);
        expect(check.error, `seq:${seq}`).toBeNull();
      }
      expect(await daemon.stop()).toBe(0);
    } finally {
      volume.remove();
    }
  }, 240_000);
});
