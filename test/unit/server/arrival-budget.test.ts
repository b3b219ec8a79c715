import { describe, expect, it } from 'vitest';
import { ArrivalBudget, type BudgetMember } from '../../../src/server/arrival-budget';

function member(): BudgetMember & { rechecks: number } {
  const m = {
    rechecks: 0,
    recheckReading(): void {
      m.rechecks++;
    },
  };
  return m;
}

describe('ArrivalBudget', () => {
  it('sums what its members hold now, each counted once at its latest figure', () => {
    const b = new ArrivalBudget(100);
    const [x, y] = [member(), member()];
    b.update(x, 30);
    b.update(y, 50);
    b.update(x, 40);
    expect(b.heldBytes).toBe(90);
    expect(b.exceeded).toBe(false);
    b.update(y, 61);
    expect(b.heldBytes).toBe(101);
    expect(b.exceeded).toBe(true);
    expect(b.roomy).toBe(false);
    b.update(x, 0);
    b.update(y, 50);
    expect(b.heldBytes).toBe(50);
    expect(b.roomy).toBe(true);
  });

  it('wakes the members stopped by it once the total is back to half, not before, and only those', () => {
    const b = new ArrivalBudget(100);
    const [x, y, z] = [member(), member(), member()];
    b.update(x, 60);
    b.update(y, 60);
    b.setStopped(x, true);
    b.setStopped(y, true);
    b.update(y, 20);
    expect(b.heldBytes).toBe(80);
    expect(x.rechecks + y.rechecks + z.rechecks).toBe(0);
    b.setStopped(y, false);
    b.update(x, 30);
    expect(b.heldBytes).toBe(50);
    expect([x.rechecks, y.rechecks, z.rechecks]).toEqual([1, 0, 0]);
    // Already roomy: further releases wake nobody again.
    b.update(x, 10);
    expect(x.rechecks).toBe(1);
  });
});
