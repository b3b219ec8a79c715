import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine, type EngineOptions, type EnginePairConfig } from '../../src/engine/engine';
import type { StreamItem } from '../../src/journal/items';

export const KiB = 1024;
export const MiB = 1024 * 1024;

export interface Fixture {
  root: string;
  options: EngineOptions;
}

/** An installation's folders under `root`, with image-file targets in `datastore/`. */
export function fixture(root: string, pairs: Array<Partial<EnginePairConfig> & { id: string; sizeBytes: number }>, extra: Partial<EngineOptions> = {}): Fixture {
  for (const d of ['retention', 'data', 'datastore']) mkdirSync(join(root, d), { recursive: true });
  return {
    root,
    options: {
      agentId: 'mt-test',
      retentionDir: join(root, 'retention'),
      dataDir: join(root, 'data'),
      pairs: pairs.map((p) => ({ target: join(root, 'datastore', `${p.id}.img`), group: null, ...p })),
      policy: { retentionSeconds: 86_400, rpoThresholdSeconds: 900 },
      ingestSegmentBytes: 1 * MiB,
      undoSegmentBytes: 256 * KiB,
      maxBatchBytes: 512 * KiB,
      cycleBytes: 64 * KiB,
      targetRetryMs: 50,
      pruneIntervalMs: 3_600_000,
      ...extra,
    },
  };
}

export function openEngine(f: Fixture): Promise<Engine> {
  return Engine.open(f.options);
}

/** Deterministic payload for (pair, seq): the model recomputes it instead of storing it. */
export function payload(pairId: string, seq: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  let x = (seq * 2654435761 + pairId.length * 40503) >>> 0;
  for (let i = 0; i < length; i += 4) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

/**
 * Writes data over a pair's whole target before the engine opens it: a disk
 * in use, whose before-images are data (a fresh disk's are zeros, which the
 * undo log keeps as a length). Returns that content, for a DiskModel's base.
 */
export function targetInUse(f: Fixture, pairId: string, sizeBytes: number): Buffer {
  const pair = f.options.pairs.find((p) => p.id === pairId);
  if (pair === undefined) throw new Error(`no pair ${pairId} in the fixture`);
  const data = payload(`${pairId}-in-use`, 0, sizeBytes);
  writeFileSync(pair.target, data);
  return data;
}

export function write(pairId: string, seq: number, offset: number, length: number, time = seq * 1_000_000): StreamItem {
  return { kind: 'write', seq, time, offset, data: payload(pairId, seq, length), resync: false };
}

/**
 * Appends the batches `next` gives, as a process server's messages arrive:
 * up to four appends in flight, so batches are encoded while earlier ones are
 * applied. Stops when `next` gives null and resolves once every append has
 * settled. A refused append goes to `onError`; without one, this rejects.
 */
export async function appendInFlight(
  e: Engine,
  pairId: string,
  next: () => StreamItem[] | null | Promise<StreamItem[] | null>,
  onError?: (err: unknown) => void,
): Promise<void> {
  const inFlight: Array<Promise<unknown>> = [];
  for (let batch = await next(); batch !== null; batch = await next()) {
    const appended = e.append(pairId, batch);
    inFlight.push(onError ? appended.catch(onError) : appended);
    if (inFlight.length >= 4) await inFlight.shift();
  }
  await Promise.all(inFlight);
}
