// npm run bench:journal [-- --dir DIR --runs 3 --sustain-seconds 60 --quick --only ingest,sustain,rebuild,rss]
//
// The retention journal against the machine's own limit, measured in the
// same run on the same filesystem (fio O_DIRECT 1 MiB appends, fdatasync
// every 8 MiB): durable ingest (acks), sustained ingest with the applier
// keeping up and its write amplification, rebuilding an old point against
// cp --sparse=always, and the engine's RSS as journal and target grow.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { benchEngine, payloadPool } from './bench/engine-setup';
import { measureRawAppend } from './bench/raw-append';
import { GiB, KiB, MB, MiB, formatBytes, median, secondsSince, table } from './bench/stats';
import type { StreamItem } from '../src/journal/items';
import { resolvePoint } from '../src/recovery/points';
import { rebuildAt, timelineOf } from '../src/recovery/rebuild';
import { statfs } from '../src/native';
import { scriptArgs } from './script-args';

const values = scriptArgs(__filename, {
  dir: { type: 'string', default: 'bench-tmp' },
  runs: { type: 'string', default: '3' },
  'sustain-seconds': { type: 'string', default: '60' },
  quick: { type: 'boolean', default: false },
  only: { type: 'string' },
});
const dir = resolve(values.dir);
const runs = Math.max(1, Number(values.runs));
const quick = values.quick;
const sustainSeconds = Number(values['sustain-seconds']);
const only = values.only ?? null;
const wanted = (part: string): boolean => only === null || only.split(',').includes(part);

type Engine = Awaited<ReturnType<typeof benchEngine>>['engine'];

/**
 * Streams `totalBytes` of writes of `writeBytes` into every pair, each
 * stream keeping up to 64 MiB unacknowledged (the protocol's window) in
 * messages of about 1 MiB, and returns the acknowledged bytes per second.
 */
async function ingest(engine: Engine, pairIds: string[], writeBytes: number, totalBytes: number, targetBytes: number, stopAt?: number): Promise<{ bytes: number; seconds: number }> {
  const pool = payloadPool();
  const perMessage = Math.max(1, Math.floor(MiB / writeBytes));
  const perPair = Math.floor(totalBytes / pairIds.length);
  const start = process.hrtime.bigint();
  let acked = 0;
  await Promise.all(
    pairIds.map(async (pairId) => {
      let seq = engine.status(pairId).durableSeq;
      let offset = 0;
      let sent = 0;
      const inFlight: Array<Promise<number>> = [];
      while (sent < perPair && (stopAt === undefined || Date.now() < stopAt)) {
        const items: StreamItem[] = [];
        for (let i = 0; i < perMessage; i++) {
          seq++;
          if (offset + writeBytes > targetBytes) offset = 0;
          const src = pool[seq % pool.length] as Buffer;
          const at = (seq * writeBytes) % (MiB - writeBytes + 1);
          items.push({ kind: 'write', seq, time: Date.now() * 1000, offset, data: src.subarray(at - (at % 512), at - (at % 512) + writeBytes), resync: false });
          offset += writeBytes;
          sent += writeBytes;
        }
        const bytes = items.length * writeBytes;
        inFlight.push(engine.append(pairId, items).then((n) => ((acked += bytes), n)));
        if (inFlight.length * perMessage * writeBytes >= 64 * MiB) await inFlight.shift();
      }
      await Promise.all(inFlight);
    }),
  );
  return { bytes: acked, seconds: secondsSince(start) };
}

async function main(): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const fsInfo = await statfs(dir);
  console.log(`bench:journal  ${new Date().toISOString()}  ${cpus().length} cpus (${cpus()[0]?.model ?? '?'})`);
  console.log(`dir ${dir} (${fsInfo.type}), medians of ${runs} runs${quick ? ', quick' : ''}\n`);

  const rawSamples: number[] = [];
  for (let r = 0; r < runs; r++) rawSamples.push(measureRawAppend(dir, MiB, GiB, 8 * MiB).bytesPerSecond);
  const limit = median(rawSamples);
  console.log(`raw append limit (fio O_DIRECT 1 MiB, fdatasync every 8 MiB): ${(limit / MB).toFixed(0)} MB/s  [${rawSamples.map((v) => (v / MB).toFixed(0)).join(' ')}]\n`);

  // 1. Durable ingest, applier free to lag.
  if (wanted('ingest')) {
  const rows: string[][] = [['writes', 'pairs', 'acked MB/s', 'runs', 'x limit']];
  const targetBytes = 4 * GiB;
  for (const writeBytes of [MiB, 4 * KiB]) {
    for (const pairs of [1, 8]) {
      const samples: number[] = [];
      for (let r = 0; r < runs; r++) {
        const total = writeBytes === MiB ? (quick ? 512 * MiB : GiB) : quick ? 128 * MiB : 256 * MiB;
        const b = await benchEngine(join(dir, 'ingest'), pairs, targetBytes, { maxApplyLagBytes: 8 * GiB, applierMemoryBytes: 64 * MiB });
        const ids = Array.from({ length: pairs }, (_, i) => `bench-${i}`);
        const res = await ingest(b.engine, ids, writeBytes, total, targetBytes);
        samples.push(res.bytes / res.seconds);
        await b.engine.close();
        rmSync(b.root, { recursive: true, force: true });
      }
      rows.push([formatBytes(writeBytes), String(pairs), (median(samples) / MB).toFixed(0), samples.map((v) => (v / MB).toFixed(0)).join(' '), (median(samples) / limit).toFixed(2)]);
    }
  }
  console.log('durable ingest (acks), applier free to lag');
  console.log(table(rows));
  }

  // 2. Sustained, applier keeping up (lag capped at 256 MiB), with write amplification.
  if (wanted('sustain')) {
    const seconds = quick ? Math.min(20, sustainSeconds) : sustainSeconds;
    const b = await benchEngine(join(dir, 'sustain'), 1, 2 * GiB, { maxApplyLagBytes: 256 * MiB, maxBytes: 16 * GiB });
    const res = await ingest(b.engine, ['bench-0'], MiB, Number.MAX_SAFE_INTEGER, 2 * GiB, Date.now() + seconds * 1000);
    await b.engine.settle(600_000);
    const written = b.engine.retentionBytesWritten();
    console.log(`\nsustained ${seconds} s, 1 MiB writes, applier keeping up: ${(res.bytes / res.seconds / MB).toFixed(0)} MB/s acked (${(res.bytes / res.seconds / limit).toFixed(2)} x limit)`);
    console.log(`  write amplification on the retention volume: ${(written / res.bytes).toFixed(3)} bytes written per byte ingested (ingest log + before-images)`);
    await b.engine.close();
    rmSync(b.root, { recursive: true, force: true });
  }

  // 3. Rebuild of an old point vs cp --sparse=always.
  if (wanted('rebuild')) {
    const disk = quick ? 512 * MiB : GiB;
    const b = await benchEngine(join(dir, 'rebuild'), 1, disk, { maxApplyLagBytes: 256 * MiB });
    await ingest(b.engine, ['bench-0'], MiB, disk, disk); // fill the disk once
    await b.engine.settle(600_000);
    const fillSeq = b.engine.status('bench-0').durableSeq;
    await ingest(b.engine, ['bench-0'], 64 * KiB, disk / 8, disk); // then an eighth of it again
    await b.engine.settle(600_000);
    const rebuildSamples: number[] = [];
    const cpSamples: number[] = [];
    const hashSamples: number[] = [];
    for (let r = 0; r < runs; r++) {
      const out = join(b.root, 'rebuilt.img');
      rmSync(out, { force: true });
      const point = await resolvePoint(timelineOf(b.engine, 'bench-0'), `seq:${fillSeq}`);
      const t0 = process.hrtime.bigint();
      let rolled = 0;
      await rebuildAt(b.engine, point, out, {
        onProgress: (phase) => {
          if (phase === 'rollback') rolled = secondsSince(t0);
        },
      });
      rebuildSamples.push(rolled);
      hashSamples.push(secondsSince(t0) - rolled);
      const cpOut = join(b.root, 'cp.img');
      rmSync(cpOut, { force: true });
      const t1 = process.hrtime.bigint();
      execFileSync('cp', ['--sparse=always', b.targetPath('bench-0'), cpOut]);
      spawnSync('sync', ['-f', cpOut]);
      cpSamples.push(secondsSince(t1));
      rmSync(cpOut, { force: true });
    }
    const rb = median(rebuildSamples);
    const cp = median(cpSamples);
    console.log(`\nrebuild of ${formatBytes(disk)} at an old point (${formatBytes(disk / 8)} of later writes undone): ${rb.toFixed(2)} s vs cp --sparse=always + sync ${cp.toFixed(2)} s: ${(cp / rb).toFixed(2)} x cp's speed; SHA-256 of the image another ${median(hashSamples).toFixed(2)} s`);
    await b.engine.close();
    rmSync(b.root, { recursive: true, force: true });
  }

  // 4. RSS, each case an engine alone in a child process.
  if (wanted('rss')) {
    const child = join(__dirname, 'bench-rss-child.js');
    const cases: Array<[number, number]> = quick
      ? [[100 * MiB, GiB], [100 * MiB, 1024 * GiB], [2 * GiB, GiB], [2 * GiB, 1024 * GiB]]
      : [[100 * MiB, GiB], [100 * MiB, 1024 * GiB], [10 * GiB, GiB], [10 * GiB, 1024 * GiB]];
    const rssRows: string[][] = [['journal', 'target (sparse)', 'peak RSS MiB', 'seconds']];
    for (const [journal, target] of cases) {
      const root = join(dir, 'rss');
      const out = execFileSync(process.execPath, [child, root, String(journal), String(target)], { encoding: 'utf8', maxBuffer: 16 * MiB });
      const r = JSON.parse(out.trim().split('\n').pop() as string) as { peakRss: number; journalBytes: number; seconds: number };
      rssRows.push([formatBytes(journal), formatBytes(target), (r.peakRss / MiB).toFixed(0), r.seconds.toFixed(1)]);
      rmSync(root, { recursive: true, force: true });
    }
    console.log('\nengine RSS (one process, 1 MiB random writes until the journal holds the amount)');
    console.log(table(rssRows));
  }
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
