// What `status` (and so the heartbeat and the metrics) says of a pair's
// points is what `points` and `recover` hold: the oldest point after an
// initial copy, and a failed-over pair's target at its failover point.
import { describe, expect, it } from 'vitest';
import { points, status, type AgentContext } from '../../../src/control/operations';
import type { StreamItem } from '../../../src/journal/items';
import { KiB, MiB, fixture, openEngine, payload } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const T0 = Date.parse('2026-12-01T00:00:00Z') * 1000;
const DISK = MiB;
const timeOf = (seq: number): number => T0 + seq * 1_000_000;
const iso = (seq: number): string => new Date(timeOf(seq) / 1000).toISOString();

describe('status of points', () => {
  it('gives the oldest point where the initial copy ended, and the failover point once failed over', async () => {
    const f = fixture(tempDir(), [{ id: 's', sizeBytes: DISK }]);
    const e = await openEngine(f);
    const ctx: AgentContext = { engine: e, agentId: 'mt-test', startedAt: new Date(), processServers: () => [], heartbeat: () => null, tests: null };
    try {
      await e.openPair('s', DISK, 512);
      let seq = 0;
      const copy: StreamItem[] = [{ kind: 'resync-start', seq: ++seq, time: timeOf(seq) }];
      for (let off = 0; off < DISK; off += 64 * KiB) copy.push({ kind: 'write', seq: ++seq, time: timeOf(seq), offset: off, data: payload('s', seq, 64 * KiB), resync: true });
      copy.push({ kind: 'resync-end', seq: ++seq, time: timeOf(seq) });
      const copyEnd = seq;
      await e.append('s', copy);
      const writes: StreamItem[] = [];
      for (let i = 0; i < 40; i++) writes.push({ kind: 'write', seq: ++seq, time: timeOf(seq), offset: (i % 16) * 4 * KiB, data: payload('s', seq, 4 * KiB), resync: false });
      await e.append('s', writes);
      await e.waitApplied('s', seq);

      const row = (await status(ctx, false)).pairs.find((p) => p.pair === 's');
      const p = await points(ctx, 's');
      expect(p.oldest).toEqual({ seq: copyEnd, time: iso(copyEnd) });
      expect(row).toMatchObject({ appliedSeq: seq, oldestPoint: iso(copyEnd), latestPoint: iso(seq), historySeconds: seq - copyEnd });

      const to = copyEnd + 10;
      await e.failover('s', to);
      const after = (await status(ctx, false)).pairs.find((x) => x.pair === 's');
      expect(after).toMatchObject({ state: 'failed-over', durableSeq: seq, appliedSeq: to, latestPoint: iso(to), oldestPoint: iso(copyEnd) });
      expect((await points(ctx, 's')).latest).toEqual({ seq: to, time: iso(to) });
    } finally {
      await e.close();
    }
  });
});
