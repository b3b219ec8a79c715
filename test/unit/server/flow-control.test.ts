import { describe, expect, it } from 'vitest';
import { ArrivalBudget } from '../../../src/server/arrival-budget';
import { FlowControl } from '../../../src/server/flow-control';

function socket(): { paused: boolean; pause(): void; resume(): void; changes: number } {
  const s = {
    paused: false,
    changes: 0,
    pause() {
      s.paused = true;
      s.changes++;
    },
    resume() {
      s.paused = false;
      s.changes++;
    },
  };
  return s;
}

describe('flow control', () => {
  it('stops reading past its own limit and reads again below half of it', () => {
    const s = socket();
    const f = new FlowControl(s, new ArrivalBudget(1000), 100);
    f.queue(60);
    f.dequeue(60);
    f.handOver(60);
    f.queue(50);
    expect(s.paused).toBe(true);
    f.dequeue(50);
    expect(s.paused).toBe(true); // 60 held: above half of 100
    f.settle(20);
    expect(s.paused).toBe(false);
    expect(f.held).toBe(40);
  });

  it('stops every connection holding anything while all together are over the budget, and one holding nothing still reads', () => {
    const budget = new ArrivalBudget(100);
    const a = socket();
    const b = socket();
    const c = socket();
    const fa = new FlowControl(a, budget, 1000);
    const fb = new FlowControl(b, budget, 1000);
    const fc = new FlowControl(c, budget, 1000);
    fa.handOver(70);
    fb.handOver(40);
    expect(budget.exceeded).toBe(true);
    // a was below the budget when it took its share; b took it over: b stops, and a at its next change.
    expect(b.paused).toBe(true);
    fa.handOver(1);
    expect(a.paused).toBe(true);
    expect(c.paused).toBe(false);
    expect(fc.reading).toBe(true);
    // Back to half the budget: the budget has those stopped look again, and they read.
    fa.settle(71);
    expect(budget.roomy).toBe(true);
    expect(b.paused).toBe(false);
    expect(a.paused).toBe(false);
  });

  it('never reads again from a peer cut off', () => {
    const s = socket();
    const f = new FlowControl(s, new ArrivalBudget(1000), 100);
    f.cutOff();
    expect(s.paused).toBe(true);
    f.queue(10);
    f.dequeue(10);
    expect(s.paused).toBe(true);
  });
});
