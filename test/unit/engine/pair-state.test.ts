import { describe, expect, it } from 'vitest';
import { PairState, UNCONFIGURED, type PairFacts } from '../../../src/engine/pair-state';

const healthy: PairFacts = { targetOpen: true, inResync: false, needsResync: false, durableSeq: 10 };
const at = (segment: number, fileOffset: number) => ({ segment, fileOffset });

describe('a pair state machine', () => {
  it('starts applying when configured, paused and unconfigured when not, and as the catalog left a failover', () => {
    expect(new PairState(true)).toMatchObject({ mode: 'applying', lifecycle: 'replicating', lastError: null });
    expect(new PairState(false)).toMatchObject({ mode: 'paused', configured: false, lastError: UNCONFIGURED });
    const rolling = new PairState(true, 'rolling-back', 7);
    expect(rolling).toMatchObject({ mode: 'paused', lifecycle: 'rolling-back', failover: 'rolling-back', failoverSeq: 7, refusesItems: true });
  });

  it('pauses on a failure, says whether the error is news, retries, resumes from the earliest place skipped and clears the error once caught up', () => {
    const s = new PairState(true);
    expect(s.stopped('target gone')).toBe(true);
    expect(s.stopped('target gone')).toBe(false);
    expect(s).toMatchObject({ paused: true, wantsResume: false, lastError: 'target gone' });
    expect(s.name(healthy)).toBe('error');
    s.skippedFrom(at(3, 4096));
    s.skippedFrom(at(2, 0));
    s.skippedFrom(at(5, 0));
    expect(s.resumeFrom).toEqual(at(2, 0));
    s.retry();
    expect(s).toMatchObject({ mode: 'retrying', paused: true, wantsResume: true });
    s.resumeBegins();
    expect(s).toMatchObject({ mode: 'applying', paused: false, wantsResume: false });
    // The error stands until a retry has caught up.
    expect(s.lastError).toBe('target gone');
    s.resumeEnds(null);
    s.caughtUp();
    expect(s).toMatchObject({ resumeFrom: null, lastError: null });
    expect(s.name(healthy)).toBe('protected');
  });

  it('keeps where a failed catch-up stopped, and pauses again', () => {
    const s = new PairState(true);
    s.stopped('EIO');
    s.skippedFrom(at(1, 0));
    s.retry();
    s.resumeBegins();
    expect(s.stopped('EIO')).toBe(false);
    s.resumeEnds(at(1, 8192));
    expect(s).toMatchObject({ mode: 'paused', resumeFrom: at(1, 8192), lastError: 'EIO' });
  });

  it('opens its target again only while configured and not failed over', () => {
    const s = new PairState(true);
    s.stopped('gone');
    s.targetOpened();
    expect(s).toMatchObject({ mode: 'applying', lastError: null });
    const off = new PairState(true);
    off.unconfigure();
    off.targetOpened();
    off.retry();
    expect(off).toMatchObject({ mode: 'paused', lastError: UNCONFIGURED });
    // What fails on a target it closed on purpose is not recorded.
    expect(off.stopped('EBADF')).toBe(false);
    expect(off.lastError).toBe(UNCONFIGURED);
    off.reconfigure();
    off.targetOpened();
    expect(off).toMatchObject({ mode: 'applying', configured: true, lastError: null });
  });

  it('fails over: refuses items from the start, rolls back, is failed over until committed', () => {
    const s = new PairState(true);
    s.failoverBegins();
    expect(s).toMatchObject({ lifecycle: 'failing-over', refusesItems: true, failover: null, paused: false });
    s.rollingBack(42);
    expect(s).toMatchObject({ lifecycle: 'rolling-back', failover: 'rolling-back', failoverSeq: 42, paused: true });
    s.failedOver();
    expect(s.name(healthy)).toBe('failed-over');
    s.retry();
    s.targetOpened();
    expect(s.mode).toBe('paused');
    s.committed(true);
    expect(s).toMatchObject({ lifecycle: 'replicating', failoverSeq: null, resumeFrom: null, mode: 'applying', refusesItems: false });
    const without = new PairState(true);
    without.failoverBegins();
    without.rollingBack(1);
    without.failedOver();
    without.committed(false);
    expect(without.mode).toBe('paused');
  });

  it('goes back to replicating when a failover cannot drain', () => {
    const s = new PairState(true);
    s.failoverBegins();
    s.failoverAbandoned();
    expect(s).toMatchObject({ lifecycle: 'replicating', refusesItems: false });
  });

  it('names the state from the machine and the facts, in order of what matters most', () => {
    const s = new PairState(true);
    expect(s.name({ ...healthy, durableSeq: 0 })).toBe('unprotected');
    expect(s.name({ ...healthy, needsResync: true })).toBe('unprotected');
    expect(s.name({ ...healthy, inResync: true, needsResync: true })).toBe('resyncing');
    expect(s.name({ ...healthy, targetOpen: false })).toBe('target-unavailable');
    s.raiseAlert('acknowledged items missing');
    expect(s.name(healthy)).toBe('error');
    expect(s.alert).toBe('acknowledged items missing');
  });
});
