// The simulator at a set rate against the real daemon: writes go out as they
// come due, the way a disk's changes reach a process server, not in bursts
// whose last items wait behind the rest (which bench:ingest would count as
// the agent's ack latency).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { WriteRecordInput } from '../../src/protocol/records';
import { ReplicationClient } from '../../src/simulator/client';
import { Simulator } from '../../src/simulator/simulator';
import { RunningDaemon, makeInstallation } from '../helpers/daemon';

const KiB = 1024;
const MiB = 1024 * KiB;
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe('simulator at a set rate', () => {
  it('sends each write when it comes due, and keeps the rate', async () => {
    const root = mkdtempSync(join(tmpdir(), 'mtagent-pacing-'));
    roots.push(root);
    const daemon = new RunningDaemon(await makeInstallation(root, [{ id: 'p', sizeBytes: 16 * MiB }]));
    await daemon.start();
    const sent: Array<{ at: number; writes: number }> = [];
    const realSend = ReplicationClient.prototype.sendRecords;
    vi.spyOn(ReplicationClient.prototype, 'sendRecords').mockImplementation(function (this: ReplicationClient, records: readonly WriteRecordInput[]) {
      sent.push({ at: performance.now(), writes: records.length });
      realSend.call(this, records);
    });
    const ioBytes = 64 * KiB;
    const rate = 8 * MiB;
    try {
      const report = await new Simulator({
        client: daemon.clientOptions(),
        pairs: [{ id: 'p', diskBytes: 16 * MiB }],
        workload: 'sequential',
        ioBytes,
        rateBytesPerSecond: rate,
        durationSeconds: 2,
        items: null,
        tagEvery: 0,
        group: null,
        tickSeconds: 60,
        seed: 3,
        messageBytes: MiB,
        reconnect: false,
      }).run();

      // Each write goes out as it comes due, in a message of its own. Sent in
      // bursts (a wait of 20 ms for an ack that never came, then all that was
      // due at once: a write comes due every 7.8 ms here) most held three.
      const perMessage = sent.map((s) => s.writes).sort((a, b) => a - b);
      expect(perMessage[Math.floor(perMessage.length / 2)]).toBe(1);
      expect(sent.reduce((n, s) => n + s.writes, 0)).toBeGreaterThan(200);
      expect(report.bytesAcked / report.seconds).toBeGreaterThan(0.9 * rate);
      expect(report.bytesAcked / report.seconds).toBeLessThan(1.1 * rate);
    } finally {
      await daemon.stop();
    }
  }, 30_000);
});
