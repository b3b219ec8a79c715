// Loop devices and mounts, for the tests and the power-loss test that put
// real filesystems on files (root and /dev/loop* needed).
import { execFileSync } from 'node:child_process';

/** Runs a command, its output captured; throws with it on a non-zero exit. */
export function quietly(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** A loop device over `backing` (a file); detach it with detachLoopDevice. */
export function attachLoopDevice(backing: string): string {
  return quietly('losetup', ['-f', '--show', backing]);
}

export function detachLoopDevice(device: string): void {
  quietly('losetup', ['-d', device]);
}

/** Unmounts, waiting a little (up to `attempts` × 100 ms) for a process that just exited to let go; lazily in the end. */
export function unmount(path: string, attempts = 20): void {
  for (let attempt = 0; attempt < attempts; attempt++) {
    try {
      quietly('umount', [path]);
      return;
    } catch {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    }
  }
  quietly('umount', ['-l', path]);
}
