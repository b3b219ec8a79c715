// A block device whose every write and flush is logged, and the device
// rebuilt from that log as a power cut could have left it: the method of
// xfstests' dm-log-writes, with a small FUSE program of ours in place of the
// device-mapper target (scripts/power-loss/log-writes-fuse.c). ext4 goes on
// a loop device over the FUSE file; the loop device passes each flush on as
// an fsync of that file, which the program logs once the writes before it
// have reached its backing file.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { RECORD_HEADER_BYTES, RECORD_MAGIC, RecordKind } from '../../src/journal/record';
import { packageRoot } from '../../src/package-root';
import { attachLoopDevice, detachLoopDevice, quietly, unmount } from '../loop-devices';

const SOURCE = join(packageRoot, 'scripts', 'power-loss', 'log-writes-fuse.c');
const SECTOR = 512;

export const LogKind = { Write: 1, Flush: 2, Discard: 3 } as const;

export interface LogEntry {
  kind: (typeof LogKind)[keyof typeof LogKind];
  offset: number;
  length: number;
  /** CLOCK_MONOTONIC when it was done (process.hrtime.bigint() reads the same clock). */
  ns: bigint;
  /** Where a write's data starts in the log file. */
  dataAt: number;
}

const run = quietly;

/** What this machine lacks to run the test, or null when it has it all. */
export function missingPrerequisites(): string | null {
  if (process.getuid?.() !== 0) return 'not root (loop devices and mounts need it)';
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse';
  for (const [tool, pkg] of [['cc', 'gcc'], ['pkg-config', 'pkg-config'], ['fusermount3', 'fuse3'], ['losetup', 'mount'], ['mkfs.ext4', 'e2fsprogs'], ['e2fsck', 'e2fsprogs']] as const) {
    try {
      run('sh', ['-c', `command -v ${tool}`]);
    } catch {
      return `${tool} is missing (apt-get install ${pkg})`;
    }
  }
  try {
    run('pkg-config', ['--exists', 'fuse3']);
  } catch {
    return 'the fuse3 headers are missing (apt-get install libfuse3-dev)';
  }
  return null;
}

/** Compiles the FUSE program into `dir`; returns its path. */
export function buildLogWrites(dir: string): string {
  const bin = join(dir, 'log-writes-fuse');
  const flags = run('pkg-config', ['--cflags', '--libs', 'fuse3']).split(/\s+/);
  run('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', bin, SOURCE, ...flags]);
  return bin;
}

function waitFor(what: string, ok: () => boolean, timeoutMs = 10_000): void {
  const until = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}

/** An ext4 filesystem on a loop device over a file: mounted at `path` until `unmount`. */
export class MountedImage {
  private constructor(
    readonly device: string,
    readonly path: string,
  ) {}

  static attach(file: string, path: string): MountedImage {
    mkdirSync(path, { recursive: true });
    const device = attachLoopDevice(file);
    return new MountedImage(device, path);
  }

  mount(): void {
    run('mount', ['-t', 'ext4', this.device, this.path]);
  }

  /** Unmounts (if mounted) and detaches the loop device. */
  detach(mounted = true): void {
    if (mounted) unmount(this.path, 50);
    detachLoopDevice(this.device);
  }
}

/** The logging device at work: FUSE program, loop device, ext4 mounted at `mountPath`. */
export class LoggedDisk {
  private fuse: ChildProcess | null = null;
  private image: MountedImage | null = null;
  readonly logPath: string;
  private readonly fuseDir: string;
  private fuseOutput = '';

  constructor(
    private readonly workDir: string,
    readonly sizeBytes: number,
    readonly mountPath: string,
  ) {
    this.logPath = join(workDir, 'device.log');
    this.fuseDir = join(workDir, 'fuse');
  }

  /** Starts logging, makes the filesystem and mounts it. */
  start(bin: string): void {
    mkdirSync(this.fuseDir, { recursive: true });
    const fuse = spawn(bin, [join(this.workDir, 'device.backing'), this.logPath, String(this.sizeBytes), this.fuseDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    fuse.stdout?.on('data', (d: Buffer) => (this.fuseOutput += d.toString()));
    fuse.stderr?.on('data', (d: Buffer) => (this.fuseOutput += d.toString()));
    this.fuse = fuse;
    const disk = join(this.fuseDir, 'disk');
    waitFor('the FUSE disk', () => {
      if (fuse.exitCode !== null) throw new Error(`log-writes-fuse exited ${fuse.exitCode}: ${this.fuseOutput}`);
      return existsSync(disk) && statSync(disk).size === this.sizeBytes;
    });
    this.image = MountedImage.attach(disk, this.mountPath);
    run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', this.image.device]);
    this.image.mount();
  }

  /** Unmounts, detaches and stops logging; the log is complete once this returns. */
  async stop(): Promise<void> {
    this.image?.detach();
    this.image = null;
    const fuse = this.fuse;
    this.fuse = null;
    if (fuse === null || fuse.exitCode !== null) return;
    const exited = new Promise((r) => fuse.once('exit', r));
    run('fusermount3', ['-u', this.fuseDir]);
    await exited;
  }
}

/**
 * Takes down what an earlier run under `dir` left (one killed half-way):
 * mounts, the FUSE disk, and loop devices over files there.
 */
export function cleanUpAfter(dir: string): void {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    try {
      quietly('umount', ['-l', m]);
    } catch {
      // Gone meanwhile.
    }
  }
  const loops = quietly('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE']).split('\n');
  for (const line of loops) {
    const [device, backing] = line.trim().split(/\s+/);
    if (device && backing && (backing === dir || backing.startsWith(`${dir}/`))) detachLoopDevice(device);
  }
}

/** Reads the log's entries (not the data). */
export function readLog(path: string): LogEntry[] {
  const fd = openSync(path, 'r');
  const out: LogEntry[] = [];
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(24);
    let at = 0;
    while (at + 24 <= size) {
      readSync(fd, head, 0, 24, at);
      const kind = head.readUInt32LE(0) as LogEntry['kind'];
      const length = head.readUInt32LE(4);
      const entry: LogEntry = { kind, length, offset: Number(head.readBigUInt64LE(8)), ns: head.readBigUInt64LE(16), dataAt: at + 24 };
      at += 24 + (kind === LogKind.Write ? length : 0);
      if (at > size) break; // a record cut short when the program was stopped
      out.push(entry);
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** One write (or discard) as replayed: whole, or only its first `sectors` sectors (torn). */
export interface Replayed {
  entry: LogEntry;
  sectors?: number;
}

/** Writes entries into an image file, in order, from the log's data. */
export class ImageWriter {
  private readonly logFd: number;
  private buffer = Buffer.alloc(4 * 1024 * 1024);
  private readonly zeros = Buffer.alloc(4 * 1024 * 1024);

  constructor(logPath: string) {
    this.logFd = openSync(logPath, 'r');
  }

  apply(imageFd: number, replayed: readonly Replayed[]): void {
    for (const { entry, sectors } of replayed) {
      const length = sectors === undefined ? entry.length : Math.min(entry.length, sectors * SECTOR);
      if (entry.kind === LogKind.Write) {
        if (this.buffer.length < length) this.buffer = Buffer.alloc(length);
        readSync(this.logFd, this.buffer, 0, length, entry.dataAt);
        writeSync(imageFd, this.buffer, 0, length, entry.offset);
      } else if (entry.kind === LogKind.Discard) {
        for (let done = 0; done < length; done += this.zeros.length) {
          writeSync(imageFd, this.zeros, 0, Math.min(this.zeros.length, length - done), entry.offset + done);
        }
      }
    }
  }

  /**
   * Whether a write starts with a batch header of the agent's logs (magic
   * "MTJ1", kind Batch: journal-format.md), and whether that batch opens an
   * undo segment (its first record a SegmentStart).
   */
  opens(entry: LogEntry): 'batch' | 'segment' | null {
    if (entry.kind !== LogKind.Write || entry.length < 2 * RECORD_HEADER_BYTES) return null;
    const head = Buffer.alloc(2 * RECORD_HEADER_BYTES);
    readSync(this.logFd, head, 0, head.length, entry.dataAt);
    const isRecord = (at: number, kind: number): boolean => head.readUInt32LE(at + 4) === RECORD_MAGIC && head.readUInt8(at + 12) === kind;
    if (!isRecord(0, RecordKind.Batch)) return null;
    return isRecord(RECORD_HEADER_BYTES, RecordKind.SegmentStart) ? 'segment' : 'batch';
  }

  close(): void {
    closeSync(this.logFd);
  }
}

/** Copies a sparse image, keeping its holes. */
export function copyImage(from: string, to: string): void {
  run('cp', ['--sparse=always', from, to]);
}

/** e2fsck -fy then -fn: the exit codes and, where either complains, the output. */
export function checkFilesystem(device: string): { repairCode: number; checkCode: number; output: string } {
  const fsck = (flag: string): { code: number; output: string } => {
    try {
      return { code: 0, output: run('e2fsck', [flag, device]) };
    } catch (err) {
      const e = err as { status?: number; stdout?: string; stderr?: string };
      return { code: e.status ?? -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
    }
  };
  const repair = fsck('-fy');
  const check = fsck('-fn');
  return { repairCode: repair.code, checkCode: check.code, output: `${repair.output}\n${check.output}`.trim() };
}
