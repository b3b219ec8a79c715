// Churn and the window forecast against a workload of known churn, on the
// engine's own clock (injected, so a 10-minute window passes in seconds):
// the forecast is within 10 % of what the window then takes, resync data is
// not churn, and a window that will not fit is warned of before history is
// shortened for space.
import { describe, expect, it } from 'vitest';
import { resolveSizes, retentionNeeded } from '../../../src/engine/options';
import type { StreamItem } from '../../../src/journal/items';
import { KiB, MiB, fixture, openEngine, payload } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const T0 = Date.parse('2026-12-01T00:00:00Z') * 1000;
const DISK = 4 * MiB;
const WRITE = 16 * KiB;
/** Writes per simulated second: 64 KiB/s of churn. */
const PER_SECOND = 4;
const WINDOW_SECONDS = 600;

describe('window forecast', () => {
  it('measures churn without resync data and forecasts within 10 % of what the window then takes', async () => {
    let now = T0;
    const f = fixture(tempDir(), [{ id: 'w', sizeBytes: DISK }], {
      now: () => now,
      policy: { retentionSeconds: WINDOW_SECONDS, rpoThresholdSeconds: 900 },
      cycleBytes: 256 * KiB,
      undoSegmentBytes: 640 * KiB,
    });
    const e = await openEngine(f);
    try {
      await e.openPair('w', DISK, 512);
      // An initial copy of the whole disk: resync data, not churn; afterwards every before-image is data.
      let seq = 0;
      const copy: StreamItem[] = [{ kind: 'resync-start', seq: ++seq, time: now }];
      for (let off = 0; off < DISK; off += 256 * KiB) copy.push({ kind: 'write', seq: ++seq, time: now, offset: off, data: payload('w', seq, 256 * KiB), resync: true });
      copy.push({ kind: 'resync-end', seq: ++seq, time: now });
      await e.append('w', copy);
      expect(e.status('w').churn.lastMinuteBytesPerSecond).toBe(0);

      // 64 KiB/s for a window and a half, four simulated seconds per append.
      const seconds = WINDOW_SECONDS * 1.5;
      for (let s = 0; s < seconds; s += 4) {
        const items: StreamItem[] = [];
        for (let i = 0; i < 4 * PER_SECOND; i++) {
          seq++;
          items.push({ kind: 'write', seq, time: T0 + (s + (i + 1) / PER_SECOND) * 1e6, offset: ((seq * 37) % (DISK / WRITE)) * WRITE, data: payload('w', seq, WRITE), resync: false });
        }
        now = T0 + (s + 4) * 1e6;
        await e.append('w', items);
      }
      await e.settle();
      await e.pruneByTime();
      const churn = e.status('w').churn;
      const rate = PER_SECOND * WRITE;
      // In 10-second buckets, with appends every 4 s: the last minute is within one append of the rate.
      for (const v of [churn.lastHourBytesPerSecond, churn.lastMinuteBytesPerSecond, churn.peakHourBytesPerSecond]) expect(Math.abs(v - rate) / rate).toBeLessThan(0.07);

      const w = await e.window(null);
      const forecast = w.neededBytes - retentionNeeded(resolveSizes(f.options), 1);
      const took = e.status('w').journalBytes;
      expect(Math.abs(forecast - took) / took, `forecast ${forecast}, the window took ${took}`).toBeLessThan(0.1);
      expect(w.fits).toBe(true);
      expect(w.policySeconds).toBe(WINDOW_SECONDS);
    } finally {
      await e.close();
    }
  }, 60_000);

  it('says a window that will not fit, while the volume still has room', async () => {
    let now = T0;
    const f = fixture(tempDir(), [{ id: 'w', sizeBytes: DISK }], {
      now: () => now,
      // A day at 64 KiB/s is 5.3 GiB: more than the 64 MiB the agent may use.
      policy: { retentionSeconds: 86_400, rpoThresholdSeconds: 900 },
      maxBytes: 64 * MiB,
    });
    const e = await openEngine(f);
    try {
      await e.openPair('w', DISK, 512);
      let seq = 0;
      for (let s = 0; s < 60; s += 4) {
        const items: StreamItem[] = [];
        for (let i = 0; i < 4 * PER_SECOND; i++) {
          seq++;
          items.push({ kind: 'write', seq, time: T0 + (s + (i + 1) / PER_SECOND) * 1e6, offset: (seq % (DISK / WRITE)) * WRITE, data: payload('w', seq, WRITE), resync: false });
        }
        now = T0 + (s + 4) * 1e6;
        await e.append('w', items);
      }
      const w = await e.window(null);
      expect(w.fits).toBe(false);
      expect(w.neededBytes).toBeGreaterThan(5 * 1024 * MiB);
      expect(w.capacityBytes).toBe(64 * MiB);
      expect(w.shortenedForSpaceAt).toBeNull();
      expect((await e.space()).usedBytes).toBeLessThan(64 * MiB);
      // Said once, as an event status shows, by the engine's own check of the space.
      for (let i = 0; i < 100 && !e.catalog.events().some((x) => x.kind === 'window-will-not-fit'); i++) await new Promise((r) => setTimeout(r, 50));
      const said = e.catalog.events().filter((x) => x.kind === 'window-will-not-fit');
      expect(said).toHaveLength(1);
      expect(said[0]?.message).toMatch(/will not fit: at the peak hourly churn it needs \d+ bytes of the 67108864/);
    } finally {
      await e.close();
    }
  }, 60_000);
});
