// Replication groups: every pair of a group at one common moment.
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { MtagentError } from '../errors';
import type { HistorySource } from './history';
import { PointRefusedError, checkValid, firstCandidate, parseTime, resolvePoint, windowAt, type ResolvedPoint } from './points';
import { catchUp, rebuildAt, timelineOf, type RebuildOptions, type RebuildResult } from './rebuild';

export function groupMembers(source: HistorySource, group: string): string[] {
  const members = source.pairIds().filter((id) => source.groupOf(id) === group);
  if (members.length === 0) throw new MtagentError('unknown-group', `no configured pair is in group ${group}`);
  return members.sort();
}

/**
 * A group POINT: `latest-app` (the newest group tag present in every member),
 * `tag:NAME` (each member's newest tag of that name), or a time.
 */
export async function resolveGroupPoint(source: HistorySource, group: string, spec: string): Promise<ResolvedPoint[]> {
  const members = groupMembers(source, group);
  const timelines = members.map((id) => timelineOf(source, id));
  if (spec === 'latest-app') {
    // Group tag values each member holds as valid points, newest first by the members' latest tag time.
    const perMember = timelines.map((t) => {
      const byGroup = new Map<string, { seq: number; time: number; name: string }>();
      for (const tag of t.tags) {
        if (tag.group === null || tag.seq < firstCandidate(t.oldest.seq, t.historyFloor, t.windows) || tag.seq > t.latestSeq || windowAt(t.windows, tag.seq)) continue;
        byGroup.set(tag.group, { seq: tag.seq, time: tag.time, name: tag.name });
      }
      return byGroup;
    });
    const first = perMember[0] as Map<string, { seq: number; time: number; name: string }>;
    const common = [...first.keys()].filter((g) => perMember.every((m) => m.has(g)));
    if (common.length === 0) {
      const seen = [...new Set(perMember.flatMap((m) => [...m.keys()]))].slice(-5);
      throw new PointRefusedError(`no group tag is present in every pair of group ${group} (${members.join(', ')})`, seen.map((g) => `group tag ${g} (not in every pair)`));
    }
    const newest = common.sort((a, b) => Math.max(...perMember.map((m) => m.get(a)?.time ?? 0)) - Math.max(...perMember.map((m) => m.get(b)?.time ?? 0))).pop() as string;
    return timelines.map((t, i) => {
      const tag = perMember[i]?.get(newest) as { seq: number; time: number; name: string };
      return { pairId: t.pairId, seq: tag.seq, time: tag.time, spec: `group tag ${newest}`, tag: t.tags.find((x) => x.seq === tag.seq) ?? null };
    });
  }
  if (!spec.startsWith('tag:') && parseTime(spec) === null) {
    throw new MtagentError('bad-point', `bad group point ${spec}: use latest-app, tag:NAME or an ISO-8601 time`);
  }
  const points: ResolvedPoint[] = [];
  for (const t of timelines) {
    try {
      const p = await resolvePoint(t, spec);
      await checkValid(t, p.seq, spec);
      points.push(p);
    } catch (err) {
      if (err instanceof PointRefusedError) {
        throw new PointRefusedError(`${spec} is not common to the whole group ${group}: ${err.message}`, err.nearest);
      }
      throw err;
    }
  }
  return points;
}

/** Rebuilds every member at one group point into DIR/<pairId>.img. */
export async function rebuildGroup(source: HistorySource, group: string, spec: string, outDir: string, options: RebuildOptions = {}): Promise<RebuildResult[]> {
  const members = groupMembers(source, group);
  for (const id of members) await catchUp(source, id);
  const unpins = members.map((id) => source.pin(id));
  const made: string[] = [];
  try {
    const points = await resolveGroupPoint(source, group, spec);
    const results: RebuildResult[] = [];
    for (const p of points) {
      const path = join(outDir, `${p.pairId}.img`);
      const fresh = !existsSync(path);
      results.push(await rebuildAt(source, p, path, options));
      if (fresh) made.push(path);
    }
    return results;
  } catch (err) {
    // The group is one recovery: cancelled or failed, the images it made go too.
    for (const path of made) rmSync(path, { force: true });
    throw err;
  } finally {
    for (const u of unpins) u();
  }
}
