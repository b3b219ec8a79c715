// Engines on a scratch folder for the benchmarks: production segment sizes,
// sparse image targets.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Engine, type EngineOptions } from '../../src/engine/engine';

export interface BenchEngine {
  engine: Engine;
  root: string;
  targetPath(pairId: string): string;
}

export async function benchEngine(root: string, pairs: number, targetBytes: number, extra: Partial<EngineOptions> = {}): Promise<BenchEngine> {
  rmSync(root, { recursive: true, force: true });
  for (const d of ['retention', 'data', 'datastore']) mkdirSync(join(root, d), { recursive: true });
  const ids = Array.from({ length: pairs }, (_, i) => `bench-${i}`);
  const targetPath = (id: string): string => join(root, 'datastore', `${id}.img`);
  const engine = await Engine.open({
    agentId: 'mt-bench',
    retentionDir: join(root, 'retention'),
    dataDir: join(root, 'data'),
    pairs: ids.map((id) => ({ id, target: targetPath(id), sizeBytes: targetBytes })),
    policy: { retentionSeconds: 86_400, rpoThresholdSeconds: 900 },
    ...extra,
  });
  for (const id of ids) await engine.openPair(id, targetBytes, 512);
  return { engine, root, targetPath };
}

/** A few distinct 1 MiB payloads to slice writes from (content does not matter to the journal). */
export function payloadPool(count = 8): Buffer[] {
  return Array.from({ length: count }, (_, k) => {
    const b = Buffer.allocUnsafe(1024 * 1024);
    let x = 0x9e3779b9 ^ k;
    for (let i = 0; i < b.length; i += 4) {
      x = (x ^ (x << 13)) >>> 0;
      x = (x ^ (x >>> 17)) >>> 0;
      x = (x ^ (x << 5)) >>> 0;
      b.writeUInt32LE(x, i);
    }
    return b;
  });
}
