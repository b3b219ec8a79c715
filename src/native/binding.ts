// The raw addon and its exact shape. Only src/native/ imports this file.
import { join } from 'node:path';
import { packageRoot } from '../package-root';

export interface RawOpenOptions {
  create?: boolean;
  direct?: boolean;
  readOnly?: boolean;
  mode?: number;
  size?: number;
}

export interface RawOpenResult {
  fd: number;
  direct: boolean;
  blockDevice: boolean;
  size: number;
}

export interface RawStatfs {
  type: string;
  magic: number;
  blockSize: number;
  capacityBytes: number;
  freeBytes: number;
  availableBytes: number;
  readOnly: boolean;
}

export interface NativeBinding {
  open(path: string, options?: RawOpenOptions): Promise<RawOpenResult>;
  close(fd: number): Promise<void>;
  /**
   * maxIoBytes (a multiple of 4096): the most one system call moves; absent or 0, no limit.
   * With `datasync`, fdatasync follows the write on the same pool thread.
   */
  pwritev(fd: number, buffers: readonly Buffer[], offset: number, maxIoBytes?: number, datasync?: boolean): Promise<number>;
  pread(fd: number, buffer: Buffer, offset: number, maxIoBytes?: number): Promise<number>;
  fdatasync(fd: number): Promise<void>;
  fsync(fd: number): Promise<void>;
  fallocate(fd: number, offset: number, length: number): Promise<void>;
  punchHole(fd: number, offset: number, length: number): Promise<void>;
  blockDeviceSize(fd: number): Promise<number>;
  seekData(fd: number, offset: number): Promise<number>;
  seekHole(fd: number, offset: number): Promise<number>;
  flock(fd: number): boolean;
  statfs(path: string): Promise<RawStatfs>;
  alignedBuffer(size: number, zero?: boolean): Buffer;
  discardPages(buffer: Buffer): number;
  releaseBuffer(buffer: Buffer): number;
  returnFreedMemory(thresholdBytes: number): boolean;
  sdNotify(state: string): boolean;
  crc32c(data: Uint8Array, seed?: number): number;
  crc32cSoftware(data: Uint8Array, seed?: number): number;
  crc32cHardware?: (data: Uint8Array, seed?: number) => number;
  crc32cImplementation: 'sse4.2' | 'software';
  directAlignment: number;
}

export const bindingPath = join(packageRoot, 'build', 'Release', 'mtagent_native.node');

function load(): NativeBinding {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(bindingPath) as NativeBinding;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(`mtagent's native addon is not built (${bindingPath}): run 'npm install' or 'npm run build'. ${reason}`);
  }
}

export const binding: NativeBinding = load();
