// `mtagent failover` while the process server is still streaming into the
// pair: the stream is refused from the moment the failover starts, and the
// target ends exactly at the chosen point.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ErrorMessage } from '../../src/protocol/messages';
import { spawn } from 'node:child_process';
import { MAIN, RunningDaemon, cli, makeInstallation } from '../helpers/daemon';

const KiB = 1024;
const DISK = 1024 * KiB;
const WRITE = 32 * KiB;

/** Item seq writes WRITE bytes of (seq & 0xff), at a place that moves around the disk. */
const offsetOf = (seq: number): number => ((seq * 7) % (DISK / WRITE)) * WRITE;

function imageAt(seq: number): Buffer {
  const img = Buffer.alloc(DISK);
  for (let s = 1; s <= seq; s++) img.fill(s & 0xff, offsetOf(s), offsetOf(s) + WRITE);
  return img;
}

describe('failover', () => {
  it('refuses the stream from its start and rolls the target back exactly to the point', async () => {
    const root = mkdtempSync(join(tmpdir(), 'mtagent-failover-'));
    try {
      const configPath = await makeInstallation(root, [{ id: 'p', sizeBytes: DISK }]);
      const daemon = new RunningDaemon(configPath);
      await daemon.start();
      const c = await daemon.client();
      const { stream } = await c.open('p', DISK);
      let acked = 0;
      let refusal: ErrorMessage | null = null;
      c.on('ack', (s: number, durable: number) => {
        if (s === stream) acked = Math.max(acked, durable);
      });
      c.on('refusal', (m: ErrorMessage) => {
        if (m.stream === stream) refusal ??= m;
      });
      // Keep about 64 items in flight until the agent refuses the stream.
      let sent = 0;
      const streaming = (async () => {
        while (refusal === null && !c.closed) {
          if (sent - acked < 64) {
            const records = [];
            for (let i = 0; i < 8; i++) {
              sent += 1;
              records.push({ stream, seq: sent, offset: offsetOf(sent), time: sent * 1000, data: Buffer.alloc(WRITE, sent & 0xff) });
            }
            c.sendRecords(records);
          }
          await new Promise((r) => setTimeout(r, 1));
        }
      })();
      while (acked < 300) await new Promise((r) => setTimeout(r, 5));

      const point = 250;
      const failover = await cli(['failover', 'p', '--at', `seq:${point}`, '--config', configPath]);
      expect(failover.code, failover.stderr + daemon.output.slice(-3000)).toBe(0);
      await streaming;
      expect(refusal).toMatchObject({ code: 'failed-over', stream });
      expect(sent).toBeGreaterThan(point);
      expect(readFileSync(join(root, 'datastore', 'p.img')).equals(imageAt(point))).toBe(true);
      const status = JSON.parse((await cli(['status', '--config', configPath, '--json'])).stdout) as { pairs: Array<{ pair: string; state: string }> };
      expect(status.pairs.find((p) => p.pair === 'p')).toMatchObject({ state: 'failed-over' });
      await expect(c.open('p', DISK)).rejects.toMatchObject({ code: 'failed-over' });
      await c.close();
      expect(await daemon.stop()).toBe(0);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('failover while the simulator streams', () => {
  it('stops that pair only: the simulator streams the others to the end and exits 0', async () => {
    const root = mkdtempSync(join(tmpdir(), 'mtagent-failover-sim-'));
    try {
      const configPath = await makeInstallation(root, [{ id: 'a', sizeBytes: DISK }, { id: 'b', sizeBytes: DISK }]);
      const daemon = new RunningDaemon(configPath);
      await daemon.start();
      try {
        const sim = spawn(process.execPath, [MAIN, 'simulate', '--config', configPath, '--workload', 'random', '--io-size', '4k', '--rate', '2M', '--duration', '6'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        sim.stdout.on('data', (d: Buffer) => (out += d.toString()));
        sim.stderr.on('data', (d: Buffer) => (out += d.toString()));
        const exited = new Promise<number | null>((r) => sim.once('exit', (code) => r(code)));
        const protectedBoth = async (): Promise<boolean> => {
          const s = JSON.parse((await cli(['status', '--config', configPath, '--json'])).stdout) as { pairs: Array<{ pair: string; state: string }> };
          return s.pairs.every((p) => p.state === 'protected');
        };
        for (let i = 0; i < 100 && !(await protectedBoth()); i++) await new Promise((r) => setTimeout(r, 100));
        const f = await cli(['failover', 'a', '--at', 'latest', '--config', configPath, '--json']);
        expect(f.code, f.stderr).toBe(0);
        const failedAt = (JSON.parse(f.stdout) as { seq: number }).seq;
        const before = JSON.parse((await cli(['status', '--config', configPath, '--json'])).stdout) as { pairs: Array<{ pair: string; durableSeq: number }> };
        expect(await exited, out).toBe(0);
        expect(out).toMatch(/stopped streaming a: failed-over: .*the other pairs go on/);
        expect(out).toMatch(/^a: stopped at acked seq \d+: failed-over/m);
        const after = JSON.parse((await cli(['status', '--config', configPath, '--json'])).stdout) as { pairs: Array<{ pair: string; state: string; durableSeq: number; appliedSeq: number }> };
        const a = after.pairs.find((p) => p.pair === 'a');
        const b = after.pairs.find((p) => p.pair === 'b');
        expect(a).toMatchObject({ state: 'failed-over', appliedSeq: failedAt });
        // b kept streaming after a was failed over.
        expect(b?.durableSeq ?? 0).toBeGreaterThan(before.pairs.find((p) => p.pair === 'b')?.durableSeq ?? 0);
      } finally {
        expect(await daemon.stop()).toBe(0);
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }, 60_000);
});
