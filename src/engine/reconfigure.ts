// A reload (SIGHUP): a new set of pairs, a new policy and retention cap,
// without a restart. Added pairs open (or come back with their retention);
// removed ones stop applying and keep their retention until purged; a pair
// whose target moved needs a resync, since nothing proves the new disk holds
// what the old one did.
import type { EngineCore } from './core';
import type { StartupHooks } from './startup';
import { openPairHistory, pointAtOrBefore } from './startup';
import { assertRetentionFits, type EnginePairConfig, type EnginePolicy } from './options';
import type { Targets } from './targets';

export interface ReconfigureResult {
  added: string[];
  removed: string[];
  changed: string[];
}

export async function reconfigure(
  core: EngineCore,
  targets: Targets,
  hooks: Pick<StartupHooks, 'makeRoom'>,
  next: { pairs: readonly EnginePairConfig[]; policy: EnginePolicy; maxBytes: number | null },
): Promise<ReconfigureResult> {
  assertRetentionFits(next.maxBytes, next.pairs.length, core.sizes);
  const wanted = new Map(next.pairs.map((p) => [p.id, p]));
  const result: ReconfigureResult = { added: [], removed: [], changed: [] };
  for (const pair of core.pairs.all()) {
    const cfg = wanted.get(pair.pairId);
    if (pair.config !== null && cfg === undefined) {
      result.removed.push(pair.pairId);
      pair.config = null;
      pair.opened = false;
      pair.session++;
      pair.state.unconfigure();
      await targets.drop(pair);
    } else if (cfg !== undefined && pair.config !== null && (cfg.target !== pair.config.target || (cfg.group ?? null) !== (pair.config.group ?? null))) {
      result.changed.push(pair.pairId);
      const targetMoved = cfg.target !== pair.config.target;
      pair.config = cfg;
      if (targetMoved) {
        await targets.drop(pair);
        pair.needsResync = true;
        core.catalog.updatePair(pair.pairId, { needsResync: true });
        // Nothing in the logs says a resync is owed: this commit alone does.
        core.catalog.flushDurably();
        if (await targets.attach(pair)) pair.state.retry();
      }
    } else if (cfg !== undefined && pair.config === null) {
      result.added.push(pair.pairId);
      pair.config = cfg;
      pair.state.reconfigure();
      if (pair.state.failover === null && (await targets.attach(pair))) pair.state.retry();
    }
  }
  for (const cfg of next.pairs) {
    if (core.pairs.has(cfg.id)) continue;
    result.added.push(cfg.id);
    const pair = await openPairHistory(core, hooks, cfg.id, cfg);
    pair.appliedSeq = pair.durableSeq;
    pair.appliedPoint = pointAtOrBefore(pair, pair.appliedSeq);
    pair.lastSeq = pair.durableSeq;
    await targets.attach(pair);
  }
  core.config = { pairs: next.pairs, policy: next.policy, maxBytes: next.maxBytes };
  core.applier.poke();
  for (const id of result.added) core.catalog.addEvent(id, 'configured', 'pair added to the configuration');
  for (const id of result.removed) core.catalog.addEvent(id, 'unconfigured', 'pair removed from the configuration; retention kept');
  return result;
}
