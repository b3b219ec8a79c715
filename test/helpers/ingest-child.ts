// Crash-test child: opens the engine on a fixture, streams a deterministic
// item sequence into one pair and prints each durable seq, until killed.
import { fixture, openEngine, MiB } from './engine-fixture';
import { streamItem } from './stream-gen';

const [root, seedArg] = process.argv.slice(2);
const seed = Number(seedArg);
const DISK = 8 * MiB;

async function main(): Promise<void> {
  const f = fixture(root as string, [{ id: 'p', sizeBytes: DISK }]);
  const e = await openEngine(f);
  const { durableSeq } = await e.openPair('p', DISK, 512);
  process.stdout.write(`opened ${durableSeq}\n`);
  let seq = durableSeq + 1;
  for (;;) {
    const n = 1 + (seq % 7);
    const items = Array.from({ length: n }, (_, i) => streamItem('p', seed, seq + i, DISK));
    seq += n;
    // Several appends in flight at once, as several messages of a stream would be.
    const durable = await e.append('p', items);
    process.stdout.write(`durable ${durable}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`child failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(3);
});
