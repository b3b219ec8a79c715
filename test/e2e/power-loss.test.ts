// Power loss at the master target: the installation on a logged device,
// rebuilt at sampled flush marks as a power cut could leave it (see
// scripts/power-loss.ts, which `npm run test:powerloss` runs longer). Needs
// root, /dev/fuse, loop devices and the fuse3 headers; .ci/run installs them,
// so there a missing one fails the run instead of skipping the test.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { missingPrerequisites } from '../../scripts/power-loss/logged-disk';
import { runPowerLoss, type PointResult } from '../../scripts/power-loss';

const missing = missingPrerequisites();
const POINTS = 10;

describe.runIf(missing === null || process.env.CI !== undefined)('power loss', () => {
  it('loses no acknowledged item, and the agent comes back by itself, at every crash point tried', async () => {
    const lines: string[] = [];
    const results: PointResult[] = await runPowerLoss({
      points: POINTS,
      seconds: 14,
      seed: 1,
      dir: join(tmpdir(), `mtagent-powerloss-${process.pid}`),
      keep: false,
      verbose: false,
      mutant: null,
      log: (line) => lines.push(line),
    });
    process.stdout.write(`${lines.map((l) => `power-loss: ${l}`).join('\n')}\n`);
    expect(results).toHaveLength(POINTS);
    expect(new Set(results.map((r) => r.variant))).toEqual(new Set(['A', 'B', 'C']));
    expect(results.flatMap((r) => r.failures.map((f) => `mark ${r.mark} ${r.variant}: ${f}`))).toEqual([]);
  }, 15 * 60_000);
});
