import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { rebuild } from '../../../src/recovery/rebuild';
import { verifyPair } from '../../../src/recovery/verify';
import { DiskModel } from '../../helpers/disk-model';
import { MiB, fixture, openEngine } from '../../helpers/engine-fixture';
import { prng, streamItem } from '../../helpers/stream-gen';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const DISK = 8 * MiB;
const CHILD = join(__dirname, '..', '..', 'helpers', 'ingest-child.ts');

interface Run {
  opened: number;
  maxDurable: number;
}

/** Starts the child, lets it report `reports` durable seqs (or run `ms`), then SIGKILLs it. */
function runAndKill(root: string, seed: number, reports: number, ms: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, root, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const run: Run = { opened: -1, maxDurable: -1 };
    let seen = 0;
    let buf = '';
    let stderr = '';
    let timer: NodeJS.Timeout | null = null;
    const kill = (): void => {
      if (timer) clearTimeout(timer);
      child.kill('SIGKILL');
    };
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const [what, n] = line.split(' ');
        if (what === 'opened') {
          run.opened = Number(n);
          timer = setTimeout(kill, ms);
        } else if (what === 'durable') {
          run.maxDurable = Math.max(run.maxDurable, Number(n));
          if (++seen >= reports) kill();
        }
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve(run);
      else reject(new Error(`child exited ${code}: ${stderr}`));
    });
  });
}

describe('engine crash safety', () => {
  it('keeps every item reported durable across 24 SIGKILLs at random moments', async () => {
    const root = tempDir();
    const seed = 7;
    const rnd = prng(20261126);
    let acknowledged = 0;
    for (let cycle = 0; cycle < 24; cycle++) {
      // Kill at different moments: during recovery, right after open, or mid-stream.
      const reports = Math.floor(rnd() * 60);
      const ms = Math.floor(rnd() * 400);
      const run = await runAndKill(root, seed, reports, ms);
      if (run.opened >= 0) expect(run.opened).toBeGreaterThanOrEqual(acknowledged);
      acknowledged = Math.max(acknowledged, run.maxDurable);
    }
    expect(acknowledged).toBeGreaterThan(50);

    const f = fixture(root, [{ id: 'p', sizeBytes: DISK }]);
    const e = await openEngine(f);
    try {
      const { durableSeq } = await e.openPair('p', DISK, 512);
      expect(durableSeq).toBeGreaterThanOrEqual(acknowledged);
      await e.settle();
      const model = new DiskModel(DISK);
      for (let s = 1; s <= durableSeq; s++) model.add(streamItem('p', seed, s, DISK));
      for (const seq of [durableSeq, acknowledged, Math.floor(acknowledged / 2), 1]) {
        const r = await rebuild(e, 'p', `seq:${seq}`, join(root, `seq-${seq}.img`), { force: true });
        expect(r.sha256, `image at seq ${seq}`).toBe(model.sha256At(seq));
      }
      expect(await verifyPair(e, 'p')).toMatchObject({ ok: true });
    } finally {
      await e.close();
    }
  }, 180_000);
});
