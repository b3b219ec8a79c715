// npm run bench:export [-- --dir DIR --runs 3 --seconds 10]
//
// Test failover exports against this machine's own limits, in one run on one
// filesystem: time from start to the first byte served (a 1 GiB and a 64 GiB
// sparse disk, and 1 GiB of history after the point in 1 MiB and in 64 KiB
// writes); sequential read through nbdcopy against `recover` of the same
// point and `cp` of the target; random 4 KiB reads through nbdfuse against
// the same reads of the target file (fio); and the acked ingest rate of a
// stream with no test, and with a test being read meanwhile.
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { silentLogger } from '../src/log';
import { resolvePoint } from '../src/recovery/points';
import { rebuildAt, timelineOf } from '../src/recovery/rebuild';
import { TestFailovers } from '../src/testfailover/manager';
import type { StreamItem } from '../src/journal/items';
import { benchEngine, payloadPool } from './bench/engine-setup';
import { GiB, KiB, MB, MiB, median, secondsSince, table } from './bench/stats';
import { scriptArgs } from './script-args';

const values = scriptArgs(__filename, {
  dir: { type: 'string', default: 'bench-tmp' },
  runs: { type: 'string', default: '3' },
  seconds: { type: 'string', default: '10' },
});
const dir = resolve(values.dir);
const runs = Math.max(1, Number(values.runs));
const seconds = Number(values.seconds);
const PAIR = 'bench-0';
// The export is served by this process: its clients are run without blocking it.
const run = promisify(execFile);

type Bench = Awaited<ReturnType<typeof benchEngine>>;

function dropCaches(): void {
  spawnSync('sync');
  spawnSync('sh', ['-c', 'echo 3 > /proc/sys/vm/drop_caches'], { stdio: 'ignore' });
}

/** Writes of `writeBytes` at pseudo-random aligned places, `totalBytes` in all, ~64 MiB in flight; acked bytes per second. */
async function stream(b: Bench, writeBytes: number, totalBytes: number, diskBytes: number, stopAt?: number): Promise<number> {
  const pool = payloadPool();
  const { engine } = b;
  let seq = engine.status(PAIR).durableSeq;
  const perMessage = Math.max(1, Math.floor(MiB / writeBytes));
  const slots = diskBytes / writeBytes;
  const inFlight: Array<Promise<number>> = [];
  let acked = 0;
  let sent = 0;
  const start = process.hrtime.bigint();
  while (sent < totalBytes && (stopAt === undefined || Date.now() < stopAt)) {
    const items: StreamItem[] = [];
    for (let i = 0; i < perMessage; i++) {
      seq++;
      const offset = ((seq * 2654435761) % slots) * writeBytes;
      const src = pool[seq % pool.length] as Buffer;
      items.push({ kind: 'write', seq, time: Date.now() * 1000, offset, data: src.subarray(0, writeBytes), resync: false });
      sent += writeBytes;
    }
    const bytes = items.length * writeBytes;
    inFlight.push(engine.append(PAIR, items).then((n) => ((acked += bytes), n)));
    if (inFlight.length * perMessage * writeBytes >= 64 * MiB) await inFlight.shift();
  }
  await Promise.all(inFlight);
  return acked / secondsSince(start);
}

function manager(b: Bench): TestFailovers {
  return TestFailovers.open({ engine: b.engine, dataDir: join(b.root, 'data'), tls: { cert: '', key: '', clientCa: null }, log: silentLogger() });
}

/** ms from asking for the test to its start answered, and to the first 4 KiB read back by a client (qemu-io, its own start included). */
async function firstByte(b: Bench, tests: TestFailovers, at: string): Promise<{ startMs: number; firstByteMs: number; uri: string }> {
  const t0 = process.hrtime.bigint();
  const t = await tests.start(PAIR, at, { listen: null, readOnly: true, scratchBytes: 64 * MiB });
  const startMs = secondsSince(t0) * 1000;
  await run('qemu-io', ['-r', '-f', 'raw', t.uri, '-c', 'read 0 4k']);
  return { startMs, firstByteMs: secondsSince(t0) * 1000, uri: t.uri };
}

async function main(): Promise<void> {
  mkdirSync(dir, { recursive: true });
  console.log(`bench:export  ${new Date().toISOString()}  ${cpus().length} cpus (${cpus()[0]?.model ?? '?'})`);
  console.log(`dir ${dir}, medians of ${runs} runs\n`);
  const rows: string[][] = [['case', 'start ms', 'first byte ms', 'runs (first byte)']];
  const samples = new Map<string, { start: number[]; first: number[] }>();
  const note = (name: string, r: { startMs: number; firstByteMs: number }): void => {
    const s = samples.get(name) ?? { start: [], first: [] };
    s.start.push(r.startMs);
    s.first.push(r.firstByteMs);
    samples.set(name, s);
  };
  const read = { nbdcopy: [] as number[], recover: [] as number[], cp: [] as number[], fuseIops: [] as number[], fileIops: [] as number[] };
  const ingest = { alone: [] as number[], during: [] as number[] };

  for (let pass = 0; pass < runs; pass++) {
    // 1. Time to the first byte: no history after the point, on a small and a large sparse disk.
    for (const disk of [GiB, 64 * GiB]) {
      process.stderr.write(`pass ${pass + 1}: first byte, ${disk / GiB} GiB disk\n`);
      const b = await benchEngine(join(dir, 'export'), 1, disk);
      await stream(b, MiB, 16 * MiB, Math.min(disk, GiB));
      await b.engine.settle();
      const tests = manager(b);
      note(`${disk / GiB} GiB disk, point = latest`, await firstByte(b, tests, 'latest'));
      await tests.close();
      await b.engine.close();
      rmSync(b.root, { recursive: true, force: true });
    }

    // 2. 1 GiB of history after the point, then reading that point.
    for (const writeBytes of [MiB, 64 * KiB]) {
      process.stderr.write(`pass ${pass + 1}: 1 GiB of history after the point in ${writeBytes / KiB} KiB writes\n`);
      const b = await benchEngine(join(dir, 'export'), 1, GiB);
      await stream(b, MiB, GiB, GiB);
      await b.engine.settle();
      const point = b.engine.status(PAIR).durableSeq;
      await stream(b, writeBytes, GiB, GiB);
      await b.engine.settle();
      const tests = manager(b);
      dropCaches();
      const fb = await firstByte(b, tests, `seq:${point}`);
      note(`1 GiB disk, 1 GiB after the point in ${writeBytes / KiB} KiB writes`, fb);
      if (writeBytes === MiB) {
        // 3. Sequential read: nbdcopy of the export, recover of the same point, cp of the target.
        dropCaches();
        let t = process.hrtime.bigint();
        await run('nbdcopy', [fb.uri, 'null:']);
        read.nbdcopy.push(GiB / secondsSince(t));
        dropCaches();
        const resolved = await resolvePoint(timelineOf(b.engine, PAIR), `seq:${point}`);
        const out = join(b.root, 'recovered.img');
        t = process.hrtime.bigint();
        await rebuildAt(b.engine, resolved, out);
        read.recover.push(GiB / secondsSince(t));
        rmSync(out, { force: true });
        dropCaches();
        t = process.hrtime.bigint();
        execFileSync('cp', [b.targetPath(PAIR), out]);
        read.cp.push(GiB / secondsSince(t));
        rmSync(out, { force: true });

        // 4. Random 4 KiB reads: through nbdfuse, and of the target file itself.
        const fuseDir = join(b.root, 'fuse');
        mkdirSync(fuseDir);
        const fuse = spawn('nbdfuse', ['-r', join(fuseDir, 'disk'), fb.uri], { stdio: 'ignore' });
        for (let i = 0; i < 100 && !existsSync(join(fuseDir, 'disk')); i++) await new Promise((r) => setTimeout(r, 50));
        const fio = async (file: string): Promise<number> => {
          dropCaches();
          const { stdout: outText } = await run('fio', ['--name=rand', `--filename=${file}`, '--rw=randread', '--bs=4k', '--numjobs=4', '--iodepth=1', '--ioengine=psync', `--runtime=${Math.max(3, seconds / 2)}`, '--time_based', '--size=1G', '--group_reporting', '--output-format=json', '--invalidate=1'], { encoding: 'utf8', maxBuffer: 16 * MiB });
          return (JSON.parse(outText) as { jobs: Array<{ read: { iops: number } }> }).jobs[0]?.read.iops ?? 0;
        };
        read.fuseIops.push(await fio(join(fuseDir, 'disk')));
        const exited = new Promise((r) => fuse.once('exit', r));
        await run('fusermount3', ['-u', fuseDir]);
        await exited;
        read.fileIops.push(await fio(b.targetPath(PAIR)));

        // 5. Acked ingest with no test, and with the test being read from end to end meanwhile.
        await tests.stop(PAIR);
        ingest.alone.push(await stream(b, MiB, Number.MAX_SAFE_INTEGER, GiB, Date.now() + seconds * 1000));
        await b.engine.settle();
        const t2 = await tests.start(PAIR, `seq:${point}`, { listen: null, readOnly: true, scratchBytes: 64 * MiB });
        let reading = true;
        const reader = (async () => {
          while (reading) await new Promise((r) => spawn('nbdcopy', [t2.uri, 'null:'], { stdio: 'ignore' }).once('exit', r));
        })();
        ingest.during.push(await stream(b, MiB, Number.MAX_SAFE_INTEGER, GiB, Date.now() + seconds * 1000));
        reading = false;
        await reader;
      }
      await tests.close();
      await b.engine.close();
      rmSync(b.root, { recursive: true, force: true });
    }
  }

  for (const [name, s] of samples) rows.push([name, median(s.start).toFixed(0), median(s.first).toFixed(0), s.first.map((v) => v.toFixed(0)).join(' ')]);
  console.log('time to the first byte (target: first byte <= 1000 ms)');
  console.log(table(rows));
  const mbs = (v: number[]): string => `${(median(v) / MB).toFixed(0)}  [${v.map((x) => (x / MB).toFixed(0)).join(' ')}]`;
  console.log('\nsequential read of the point (1 GiB disk, 1 GiB of history after it), caches dropped');
  console.log(table([
    ['what', 'MB/s  [runs]'],
    ['nbdcopy of the export', mbs(read.nbdcopy)],
    ['recover of the same point', mbs(read.recover)],
    ['cp of the target file', mbs(read.cp)],
  ]));
  console.log(`nbdcopy x recover: ${(median(read.nbdcopy) / median(read.recover)).toFixed(2)} (target >= 0.7); nbdcopy x cp: ${(median(read.nbdcopy) / median(read.cp)).toFixed(2)}`);
  console.log(`\nrandom 4 KiB reads, 4 jobs: through nbdfuse ${median(read.fuseIops).toFixed(0)} IOPS, of the target file ${median(read.fileIops).toFixed(0)} IOPS, ratio ${(median(read.fuseIops) / median(read.fileIops)).toFixed(2)}`);
  console.log(`\nacked ingest (1 MiB writes, ${seconds} s): alone ${mbs(ingest.alone)} MB/s, while the test is read ${mbs(ingest.during)} MB/s, ratio ${(median(ingest.during) / median(ingest.alone)).toFixed(2)} (target >= 0.8)`);
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
