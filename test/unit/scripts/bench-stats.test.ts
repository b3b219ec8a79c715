import { describe, expect, it } from 'vitest';
import { bucketOf, histogramQuantile, percentile } from '../../../scripts/bench/stats';

describe('histogramQuantile', () => {
  const bounds = [1, 2, 4, 8];

  it('interpolates within the bucket the rank falls in, as Prometheus does', () => {
    // 10 in (0,1], 80 in (1,2], 10 in (2,4]
    const counts = [10, 80, 10, 0, 0];
    expect(histogramQuantile(bounds, counts, 0.5)).toBeCloseTo(1.5, 10);
    expect(histogramQuantile(bounds, counts, 0.05)).toBeCloseTo(0.5, 10);
    expect(histogramQuantile(bounds, counts, 0.99)).toBeCloseTo(2 + 2 * 0.9, 10);
  });

  it('skips empty buckets and gives the last bound for ranks above it', () => {
    expect(histogramQuantile(bounds, [0, 0, 0, 5, 0], 0.5)).toBeCloseTo(4 + 4 * 0.5, 10);
    expect(histogramQuantile(bounds, [1, 0, 0, 0, 99], 0.99)).toBe(8);
  });

  it('is NaN for an empty histogram', () => {
    expect(histogramQuantile(bounds, [0, 0, 0, 0, 0], 0.5)).toBeNaN();
  });

  it('estimates what the samples give, within a bucket', () => {
    const fine = [0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 15, 20];
    const samples = Array.from({ length: 10_000 }, (_, i) => 0.3 + 12 * ((i * 7919) % 10_000) ** 2 / 1e8);
    const counts = new Array<number>(fine.length + 1).fill(0);
    for (const x of samples) counts[bucketOf(fine, x)] = (counts[bucketOf(fine, x)] as number) + 1;
    for (const q of [0.5, 0.9, 0.99]) {
      const exact = percentile(samples, q * 100);
      const b = bucketOf(fine, exact);
      const lower = b === 0 ? 0 : (fine[b - 1] as number);
      const est = histogramQuantile(fine, counts, q);
      expect(est).toBeGreaterThanOrEqual(lower);
      expect(est).toBeLessThanOrEqual(fine[b] as number);
    }
  });
});

describe('bucketOf', () => {
  it('puts a value on a bound into that bound\'s bucket (le), and values above every bound past them', () => {
    expect(bucketOf([1, 2], 0)).toBe(0);
    expect(bucketOf([1, 2], 1)).toBe(0);
    expect(bucketOf([1, 2], 1.5)).toBe(1);
    expect(bucketOf([1, 2], 3)).toBe(2);
  });
});
