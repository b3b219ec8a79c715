// npm run bench:io [-- --dir DIR --size-mib N --runs N]
//
// Durable sequential append, three ways in one run on one filesystem:
// the addon (O_DIRECT + pwritev + fdatasync), Node's fs (writeSync +
// fdatasyncSync, through the page cache) and fio as the machine's limit.
// Then CRC32C throughput: hardware, software, and zlib.crc32 for scale.
import { closeSync, fdatasyncSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import * as zlib from 'node:zlib';
import { measureRawAppend } from './bench/raw-append';
import { GB, MB, MiB, KiB, formatBytes, median, secondsSince, table } from './bench/stats';
import { BlockFile, alignedBuffer, crc32c, crc32cHardware, crc32cImplementation, crc32cSoftware, statfs } from '../src/native';
import { scriptArgs } from './script-args';

const FLUSH_BYTES = 8 * MiB;

const values = scriptArgs(__filename, {
  dir: { type: 'string', default: 'bench-tmp' },
  'size-mib': { type: 'string', default: '1024' },
  runs: { type: 'string', default: '3' },
});
const dir = resolve(values.dir);
const totalBytes = Number(values['size-mib']) * MiB;
const runs = Math.max(1, Number(values.runs));

function pattern(size: number): Buffer {
  const b = alignedBuffer(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE((i * 2654435761) >>> 0, i);
  return b;
}

async function addonAppend(file: string, block: Buffer, batched: boolean): Promise<number> {
  rmSync(file, { force: true });
  const f = await BlockFile.open(file, { create: true, direct: true });
  if (!f.direct) throw new Error(`${dir} does not take O_DIRECT: the addon figure would be buffered`);
  const perFlush = FLUSH_BYTES / block.length;
  const batch = new Array<Buffer>(perFlush).fill(block);
  const start = process.hrtime.bigint();
  let offset = 0;
  while (offset < totalBytes) {
    if (batched) {
      offset += await f.writev(batch, offset);
    } else {
      for (let i = 0; i < perFlush; i++) offset += await f.write(block, offset);
    }
    await f.datasync();
  }
  const seconds = secondsSince(start);
  await f.close();
  rmSync(file, { force: true });
  return totalBytes / seconds;
}

function nodeFsAppend(file: string, block: Buffer): number {
  rmSync(file, { force: true });
  const fd = openSync(file, 'w', 0o600);
  const start = process.hrtime.bigint();
  let written = 0;
  while (written < totalBytes) {
    written += writeSync(fd, block);
    if (written % FLUSH_BYTES === 0) fdatasyncSync(fd);
  }
  fdatasyncSync(fd);
  const seconds = secondsSince(start);
  closeSync(fd);
  rmSync(file, { force: true });
  return totalBytes / seconds;
}

function crcRate(fn: (b: Uint8Array) => number, buf: Buffer, minSeconds = 0.6): number {
  let bytes = 0;
  const start = process.hrtime.bigint();
  let sink = 0;
  do {
    for (let i = 0; i < 64; i++) sink ^= fn(buf);
    bytes += 64 * buf.length;
  } while (secondsSince(start) < minSeconds);
  if (sink === -1) console.log('');
  return bytes / secondsSince(start);
}

async function main(): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const fs = await statfs(dir);
  console.log(`bench:io  ${new Date().toISOString()}  ${cpus().length} cpus (${cpus()[0]?.model ?? '?'})`);
  console.log(`dir ${dir} (${fs.type}), ${formatBytes(totalBytes)} per run, fdatasync every ${formatBytes(FLUSH_BYTES)}, median of ${runs} runs\n`);

  const rows: string[][] = [['block', 'method', 'MB/s (median)', 'runs', 'x limit']];
  const file = join(dir, `bench-io-${process.pid}.bin`);
  for (const blockBytes of [64 * KiB, MiB]) {
    const block = pattern(blockBytes);
    const samples: Record<string, number[]> = { limit: [], addon: [], batched: [], fs: [] };
    let limitMethod = '';
    // Interleave the methods run by run so drift in the VM's disk hits them alike.
    for (let r = 0; r < runs; r++) {
      const raw = measureRawAppend(dir, blockBytes, totalBytes, FLUSH_BYTES);
      limitMethod = `${raw.tool}: ${raw.method}`;
      samples.limit?.push(raw.bytesPerSecond);
      samples.addon?.push(await addonAppend(file, block, false));
      samples.batched?.push(await addonAppend(file, block, true));
      samples.fs?.push(nodeFsAppend(file, block));
    }
    const limit = median(samples.limit ?? []);
    const label: Record<string, string> = {
      limit: limitMethod,
      addon: 'addon O_DIRECT, one pwritev per block',
      batched: `addon O_DIRECT, one pwritev per ${formatBytes(FLUSH_BYTES)}`,
      fs: 'node fs writeSync + fdatasyncSync',
    };
    for (const key of ['limit', 'addon', 'batched', 'fs']) {
      const s = samples[key] ?? [];
      rows.push([
        formatBytes(blockBytes),
        label[key] ?? key,
        (median(s) / MB).toFixed(0),
        s.map((v) => (v / MB).toFixed(0)).join(' '),
        (median(s) / limit).toFixed(2),
      ]);
    }
  }
  console.log(table(rows));

  const buf = pattern(MiB);
  const crcRows: string[][] = [['CRC over 1 MiB buffers', 'GB/s (median)', 'runs']];
  const crcMethods: Array<[string, (b: Uint8Array) => number]> = [
    [`crc32c (${crc32cImplementation})`, crc32c],
    ...(crc32cHardware ? [['crc32c hardware path', crc32cHardware] as [string, (b: Uint8Array) => number]] : []),
    ['crc32c software path', crc32cSoftware],
  ];
  const zcrc = (zlib as unknown as { crc32?: (b: Uint8Array) => number }).crc32;
  if (zcrc) crcMethods.push(['zlib.crc32 (CRC-32, for scale)', zcrc]);
  const crcMedians = new Map<string, number>();
  for (const [name, fn] of crcMethods) {
    const s = Array.from({ length: Math.max(3, runs) }, () => crcRate(fn, buf));
    crcMedians.set(name, median(s));
    crcRows.push([name, (median(s) / GB).toFixed(2), s.map((v) => (v / GB).toFixed(2)).join(' ')]);
  }
  console.log(`\n${table(crcRows)}`);
  const best = crcMedians.get(`crc32c (${crc32cImplementation})`) ?? Number.NaN;
  const z = zcrc ? crcMedians.get('zlib.crc32 (CRC-32, for scale)') : undefined;
  if (z) console.log(`crc32c / zlib.crc32 = ${(best / z).toFixed(2)}`);
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
