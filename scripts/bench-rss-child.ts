// bench:journal's memory probe: one engine alone in a process, filling its
// journal with 1 MiB writes at random offsets of a (sparse) target, sampling
// RSS. Prints one JSON line.
import { join } from 'node:path';
import { benchEngine, payloadPool } from './bench/engine-setup';
import type { StreamItem } from '../src/journal/items';

const [root, journalArg, targetArg] = process.argv.slice(2);
const journalBytes = Number(journalArg);
const targetBytes = Number(targetArg);
const MiB = 1024 * 1024;

async function main(): Promise<void> {
  let peak = 0;
  const sample = (): void => {
    peak = Math.max(peak, process.memoryUsage().rss);
  };
  const timer = setInterval(sample, 50);
  const { engine } = await benchEngine(join(root as string), 1, targetBytes, { maxApplyLagBytes: 256 * MiB });
  const pool = payloadPool();
  let x = 12345;
  const windowBytes = 64 * MiB;
  const inFlight: Array<Promise<number>> = [];
  const count = Math.ceil(journalBytes / MiB);
  const start = Date.now();
  for (let seq = 1; seq <= count; seq++) {
    x = (x * 1103515245 + 12345) >>> 0;
    const offset = (x % (targetBytes / MiB)) * MiB;
    const item: StreamItem = { kind: 'write', seq, time: Date.now() * 1000, offset, data: pool[seq % pool.length] as Buffer, resync: false };
    inFlight.push(engine.append('bench-0', [item]));
    if (inFlight.length * MiB >= windowBytes) await inFlight.shift();
  }
  await Promise.all(inFlight);
  await engine.settle(600_000);
  sample();
  const status = engine.status('bench-0');
  await engine.close();
  clearInterval(timer);
  process.stdout.write(`${JSON.stringify({ peakRss: peak, journalBytes: status.journalBytes, seconds: (Date.now() - start) / 1000 })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
