// The machine's own limit for durable sequential appends, measured with fio
// (or dd when fio is missing) on the filesystem under test. Other benchmarks
// divide their rates by this figure.
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { MiB } from './stats';

export interface RawAppendResult {
  tool: 'fio' | 'dd';
  bytesPerSecond: number;
  /** What the tool did, in words, for the printed report. */
  method: string;
}

export function haveFio(): boolean {
  return spawnSync('fio', ['--version'], { stdio: 'ignore' }).status === 0;
}

/**
 * O_DIRECT appends of `blockBytes` to a new file, fdatasync every `flushBytes`.
 * fio's own preallocation is off so the file grows as a log does.
 */
export function measureRawAppend(dir: string, blockBytes: number, totalBytes: number, flushBytes: number): RawAppendResult {
  const file = join(dir, `raw-append-${process.pid}.bin`);
  rmSync(file, { force: true });
  try {
    if (haveFio()) {
      const out = execFileSync(
        'fio',
        [
          '--name=append',
          `--filename=${file}`,
          '--rw=write',
          `--bs=${blockBytes}`,
          `--size=${totalBytes}`,
          '--direct=1',
          '--ioengine=psync',
          `--fdatasync=${Math.max(1, Math.round(flushBytes / blockBytes))}`,
          '--fallocate=none',
          '--end_fsync=1',
          '--output-format=json',
        ],
        { encoding: 'utf8', maxBuffer: 64 * MiB },
      );
      const json = JSON.parse(out.slice(out.indexOf('{'))) as { jobs: Array<{ write: { bw_bytes: number } }> };
      const bw = json.jobs[0]?.write.bw_bytes;
      if (bw === undefined) throw new Error('fio printed no write bandwidth');
      return { tool: 'fio', bytesPerSecond: bw, method: 'fio psync O_DIRECT, fdatasync every flush interval' };
    }
    const count = Math.round(totalBytes / blockBytes);
    const start = process.hrtime.bigint();
    execFileSync('dd', ['if=/dev/zero', `of=${file}`, `bs=${blockBytes}`, `count=${count}`, 'oflag=direct', 'conv=fdatasync'], {
      stdio: 'ignore',
    });
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    return { tool: 'dd', bytesPerSecond: totalBytes / seconds, method: 'dd oflag=direct conv=fdatasync (one flush at the end)' };
  } finally {
    rmSync(file, { force: true });
  }
}
