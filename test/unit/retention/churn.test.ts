// The churn meter on a clock of the test's: the last minute, the last hour,
// and the busiest whole hour of the last day.
import { describe, expect, it } from 'vitest';
import { ChurnMeter } from '../../../src/retention/churn';

const S = 1e6;

describe('ChurnMeter', () => {
  it('gives the rate over the last minute and hour, and the peak hour of the last day', () => {
    let now = 1_000_000 * S;
    const m = new ChurnMeter(() => now);
    // Two hours at 1000 B/s, one at 5000 B/s, then two at 1000 B/s again.
    const run = (seconds: number, perSecond: number): void => {
      for (let i = 0; i < seconds; i++) {
        now += S;
        m.add(perSecond);
      }
    };
    run(7200, 1000);
    expect(m.churn()).toEqual({ lastMinuteBytesPerSecond: 1000, lastHourBytesPerSecond: 1000, peakHourBytesPerSecond: 1000 });
    run(3600, 5000);
    expect(m.churn().lastHourBytesPerSecond).toBe(5000);
    run(7200, 1000);
    const c = m.churn();
    expect(c.lastMinuteBytesPerSecond).toBe(1000);
    expect(c.lastHourBytesPerSecond).toBe(1000);
    expect(c.peakHourBytesPerSecond).toBe(5000);
    // A day later the burst has left the window.
    run(86_400, 1000);
    expect(m.churn().peakHourBytesPerSecond).toBe(1000);
  });

  it('takes less than an hour seen as the hour so far, not a burst of seconds for an hour', () => {
    let now = 5_000 * S;
    const m = new ChurnMeter(() => now);
    now += 10 * S;
    m.add(10 * 1_000_000);
    now += 590 * S;
    const c = m.churn();
    expect(c.lastHourBytesPerSecond).toBeCloseTo(10_000_000 / 600, 3);
    expect(c.peakHourBytesPerSecond).toBe(c.lastHourBytesPerSecond);
    expect(c.lastMinuteBytesPerSecond).toBe(0);
  });

  it('goes to zero when the source stops writing', () => {
    let now = 0;
    const m = new ChurnMeter(() => now);
    now += S;
    m.add(4096);
    now += 2 * 3600 * S;
    expect(m.churn().lastMinuteBytesPerSecond).toBe(0);
    expect(m.churn().lastHourBytesPerSecond).toBe(0);
  });
});
