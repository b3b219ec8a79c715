// POINT (README, Commands): latest, latest-app, an ISO-8601 time, seq:N, tag:NAME.
// A point outside retention or inside a resync window is refused, naming
// the nearest valid points.
import { MtagentError } from '../errors';
import { RecordKind } from '../journal/record';
import type { ItemPoint, UndoLog } from '../journal/undo-log';
import type { ResyncWindowRow, TagRow } from '../store/catalog';

export interface Timeline {
  pairId: string;
  /** The oldest state the retained history reaches. */
  oldest: ItemPoint;
  /** A commit dropped the history up to this seq (0: none): the target matched no state of the source there. */
  historyFloor: number;
  /** The newest state that can be rebuilt (what the target holds). */
  latestSeq: number;
  /** The newest durable item; past latestSeq until the applier catches up. */
  durableSeq: number;
  /** Its source time, µs (null when not known): no state after it is known yet. */
  durableTime: number | null;
  /** Why applying is paused, if it is: points past latestSeq wait for it. */
  applyPausedBy: string | null;
  windows: readonly ResyncWindowRow[];
  tags: readonly TagRow[];
  undo: UndoLog;
}

export interface ResolvedPoint {
  pairId: string;
  seq: number;
  /** Source time of the item at seq, µs; null for the empty state before any item. */
  time: number | null;
  /** How it was named, for messages. */
  spec: string;
  tag: TagRow | null;
}

export class PointRefusedError extends MtagentError {
  readonly nearest: string[];
  constructor(message: string, nearest: string[]) {
    super('point-refused', nearest.length > 0 ? `${message}; nearest valid points: ${nearest.join(', ')}` : message);
    this.name = 'PointRefusedError';
    this.nearest = nearest;
  }
}

export function isoTime(us: number | null): string | null {
  return us === null || us <= 0 ? null : new Date(Math.floor(us / 1000)).toISOString();
}

export function parseTime(spec: string): number | null {
  if (!/^\d{4}-\d{2}-\d{2}T/.test(spec)) return null;
  const ms = Date.parse(spec);
  if (Number.isNaN(ms)) return null;
  // Keep microseconds when given (2026-11-26T18:00:00.123456Z).
  const frac = /\.(\d{4,6})/.exec(spec)?.[1];
  const extraUs = frac ? Number(frac.padEnd(6, '0').slice(3, 6)) : 0;
  return ms * 1000 + extraUs;
}

/**
 * The first seq that may be a recovery point: in the retained history, and
 * after any history a commit dropped. The disk before a pair's first item
 * (seq 0) is one only while no resync opens on item 1: a new pair's initial
 * copy keeps no before-images, so nothing before its end can be rebuilt.
 */
export function firstCandidate(oldestSeq: number, historyFloor: number, windows: readonly ResyncWindowRow[]): number {
  const first = historyFloor > 0 ? Math.max(oldestSeq, historyFloor + 1) : oldestSeq;
  return first === 0 && windowAt(windows, 1) !== null ? 1 : first;
}

/** The first seq at or after `from` outside every resync window; null when an open window covers all after it. */
export function firstOutsideWindows(from: number, windows: readonly ResyncWindowRow[]): number | null {
  let seq = from;
  for (;;) {
    const w = windowAt(windows, seq);
    if (w === null) return seq;
    if (w.endSeq === null) return null;
    seq = w.endSeq;
  }
}

export function windowAt(windows: readonly ResyncWindowRow[], seq: number): ResyncWindowRow | null {
  for (const w of windows) if (w.startSeq <= seq && (w.endSeq === null || seq < w.endSeq)) return w;
  return null;
}

/** Seq of the newest item whose time is at or before `time`, within the timeline; null if before it. */
export async function seqAtOrBefore(t: Timeline, time: number): Promise<number | null> {
  if (time < t.oldest.time && t.oldest.seq > 0) return null;
  // The state before a pair's first item has no time: a time reaches it only through a later item.
  let best: number | null = t.oldest.seq > 0 ? t.oldest.seq : null;
  for (const seg of t.undo.segments().reverse()) {
    if (seg.firstTime === null || seg.firstSeq === null || seg.firstSeq > t.latestSeq) continue;
    if (seg.firstTime > time) continue;
    for (const batch of await t.undo.readSegment(seg.segment)) {
      for (const r of batch.records) {
        if (r.kind === RecordKind.SegmentStart || r.seq > t.latestSeq) continue;
        if (r.time <= time && (best === null || r.seq > best)) best = r.seq;
      }
    }
    return best;
  }
  return best;
}

/** Source time of the item at `seq` (µs), or null when not known (seq 0). */
export async function timeOf(t: Timeline, seq: number): Promise<number | null> {
  if (seq === t.oldest.seq) return t.oldest.time > 0 ? t.oldest.time : null;
  const seg = t.undo.segments().find((s) => s.firstSeq !== null && s.lastSeq !== null && s.firstSeq <= seq && seq <= s.lastSeq);
  if (!seg) return null;
  if (seg.lastSeq === seq) return seg.lastTime;
  for (const batch of await t.undo.readSegment(seg.segment)) {
    for (const r of batch.records) if (r.seq === seq && r.kind !== RecordKind.SegmentStart) return r.time;
  }
  return null;
}

function describe(seq: number, time: number | null): string {
  const iso = isoTime(time);
  return iso ? `seq:${seq} (${iso})` : `seq:${seq}`;
}

/** The oldest recovery point of the timeline; null when it has none yet (an initial copy under way). */
export function oldestPoint(t: Timeline): number | null {
  const seq = firstOutsideWindows(firstCandidate(t.oldest.seq, t.historyFloor, t.windows), t.windows);
  return seq !== null && seq <= t.latestSeq ? seq : null;
}

/** The newest and oldest valid points, for refusals. */
export async function validBounds(t: Timeline): Promise<string[]> {
  const out: string[] = [];
  let newest = t.latestSeq;
  const w = windowAt(t.windows, newest);
  if (w) newest = w.startSeq - 1;
  const oldest = oldestPoint(t) ?? Number.POSITIVE_INFINITY;
  if (oldest <= newest) {
    out.push(`oldest ${describe(oldest, await timeOf(t, oldest))}`);
    if (newest !== oldest) out.push(`latest ${describe(newest, await timeOf(t, newest))}`);
  }
  const app = newestAppTag(t);
  if (app) out.push(`latest-app tag:${app.name} ${describe(app.seq, app.time)}`);
  return out;
}

function newestAppTag(t: Timeline): TagRow | null {
  for (let i = t.tags.length - 1; i >= 0; i--) {
    const tag = t.tags[i] as TagRow;
    if (tag.kind === 'app' && tag.seq <= t.latestSeq && tag.seq >= firstCandidate(t.oldest.seq, t.historyFloor, t.windows) && windowAt(t.windows, tag.seq) === null) return tag;
  }
  return null;
}

/** Checks that the state after `seq` can be rebuilt, or throws PointRefusedError. */
export async function checkValid(t: Timeline, seq: number, spec: string): Promise<void> {
  if (seq > t.latestSeq && seq <= t.durableSeq && t.applyPausedBy !== null) {
    throw new PointRefusedError(
      `${spec} (seq ${seq}) of ${t.pairId} is durable but not on the target yet, and applying is paused (${t.applyPausedBy}); it can be rebuilt once applying resumes`,
      await validBounds(t),
    );
  }
  const first = firstCandidate(t.oldest.seq, t.historyFloor, t.windows);
  if (seq < first || seq > t.latestSeq) {
    const why = seq === 0 ? 'the disk before the first item was not kept: the pair began with an initial copy' : t.historyFloor >= seq ? `the history up to seq ${t.historyFloor} was dropped by a commit` : `seq ${first}..${t.latestSeq}`;
    throw new PointRefusedError(`${spec} (seq ${seq}) is outside the retained history of ${t.pairId} (${why})`, await validBounds(t));
  }
  const w = windowAt(t.windows, seq);
  if (w) {
    const nearest: string[] = [];
    const before = w.startSeq - 1;
    if (before >= first && windowAt(t.windows, before) === null) nearest.push(`before the resync ${describe(before, await timeOf(t, before))}`);
    if (w.endSeq !== null && w.endSeq <= t.latestSeq) nearest.push(`after the resync ${describe(w.endSeq, w.endTime)}`);
    throw new PointRefusedError(`${spec} (seq ${seq}) of ${t.pairId} is inside a resync window, where the target matched no state of the source`, nearest);
  }
}

export async function resolvePoint(t: Timeline, spec: string): Promise<ResolvedPoint> {
  let seq: number;
  let tag: TagRow | null = null;
  if (spec === 'latest') {
    // While applying is paused, the newest item is not what the target holds: said, not rebuilt older in silence.
    seq = t.applyPausedBy !== null ? t.durableSeq : t.latestSeq;
  } else if (spec === 'latest-app') {
    tag = newestAppTag(t);
    if (!tag) throw new PointRefusedError(`${t.pairId} has no app-consistent tag in its retained history outside resync windows`, await validBounds(t));
    seq = tag.seq;
  } else if (spec.startsWith('seq:')) {
    const n = Number(spec.slice(4));
    if (!Number.isSafeInteger(n) || n < 0) throw new MtagentError('bad-point', `bad point ${spec}: seq:N takes a whole number`);
    seq = n;
  } else if (spec.startsWith('tag:')) {
    const name = spec.slice(4);
    const found = [...t.tags].reverse().find((x) => x.name === name && x.seq <= t.latestSeq);
    if (!found) throw new PointRefusedError(`${t.pairId} has no tag named ${name} in its retained history`, await validBounds(t));
    tag = found;
    seq = found.seq;
  } else {
    const time = parseTime(spec);
    if (time === null) {
      throw new MtagentError('bad-point', `bad point ${spec}: use latest, latest-app, an ISO-8601 time (2026-11-26T18:00:00Z), seq:N or tag:NAME`);
    }
    if (t.durableTime !== null && time > t.durableTime) {
      throw new PointRefusedError(
        `${spec} is after the newest item of ${t.pairId} (seq ${t.durableSeq}, ${isoTime(t.durableTime) ?? 'no time'}): nobody knows the disk at that moment yet`,
        await validBounds(t),
      );
    }
    const found = await seqAtOrBefore(t, time);
    if (found === null) throw new PointRefusedError(`${spec} is before the retained history of ${t.pairId}`, await validBounds(t));
    seq = found;
  }
  await checkValid(t, seq, spec);
  return { pairId: t.pairId, seq, time: tag ? tag.time : await timeOf(t, seq), spec, tag };
}
