// Real block devices and filesystems for tests, where this machine lets us
// make them (root, /dev/loop*, mkfs.ext4): a loop device over a sparse file,
// and a small ext4 volume mounted on one, which can really fill up.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { attachLoopDevice, detachLoopDevice, quietly, unmount } from '../../scripts/loop-devices';

export { attachLoopDevice, detachLoopDevice };

export function canMakeLoopDevices(): boolean {
  const probe = join(tmpdir(), `mtagent-loop-probe-${process.pid}`);
  try {
    writeFileSync(probe, Buffer.alloc(0));
    truncateSync(probe, 1024 * 1024);
    detachLoopDevice(attachLoopDevice(probe));
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { force: true });
  }
}

/** Volumes still mounted after a test file (a test that timed out) are removed, not left behind. */
const mountedVolumes = new Set<() => void>();
afterAll(() => {
  for (const remove of mountedVolumes) {
    try {
      remove();
    } catch {
      // Busy still: the lazy unmount lets go once the last user does.
    }
  }
});

export interface ScratchVolume {
  /** Where the volume is mounted. */
  path: string;
  /** Unmounts it and removes its backing file. */
  remove(): void;
}

export interface ThinVolume extends ScratchVolume {
  /** Gives the backing store `storeBytes` in all. */
  grow(storeBytes: number): void;
  /** Unmounts, repairs the filesystem (e2fsck -fy) and mounts it again, read-write. */
  repair(): void;
}

/**
 * An ext4 filesystem of `sizeBytes` on a loop device over a sparse file,
 * mounted under the OS temp dir; with `storeBytes`, the file lives in a tmpfs
 * of that size (thin-provisioned) and ext4 goes read-only on write errors.
 */
function mountExt4(sizeBytes: number, storeBytes: number | null): ThinVolume {
  const root = mkdtempSync(join(tmpdir(), storeBytes === null ? 'mtagent-volume-' : 'mtagent-thin-'));
  const store = join(root, 'store');
  const path = join(root, 'mnt');
  const backing = join(storeBytes === null ? root : store, 'volume.img');
  const mountOptions = storeBytes === null ? [] : ['-o', 'errors=remount-ro'];
  mkdirSync(path);
  let storeMounted = false;
  let device: string | null = null;
  let mounted = false;
  const remove = (): void => {
    mountedVolumes.delete(remove);
    if (mounted) unmount(path);
    mounted = false;
    if (device !== null) detachLoopDevice(device);
    device = null;
    if (storeMounted) unmount(store);
    storeMounted = false;
    rmSync(root, { recursive: true, force: true });
  };
  mountedVolumes.add(remove);
  try {
    if (storeBytes !== null) {
      mkdirSync(store);
      quietly('mount', ['-t', 'tmpfs', '-o', `size=${storeBytes}`, 'tmpfs', store]);
      storeMounted = true;
    }
    writeFileSync(backing, Buffer.alloc(0));
    truncateSync(backing, sizeBytes);
    // A thin volume has its inode tables and journal written now, so that only the agent's writes take the store.
    const mkfsOptions = storeBytes === null ? [] : ['-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0'];
    quietly('mkfs.ext4', ['-q', '-F', ...mkfsOptions, backing]);
    device = attachLoopDevice(backing);
    quietly('mount', [...mountOptions, device, path]);
    mounted = true;
  } catch (err) {
    remove();
    throw err;
  }
  return {
    path,
    remove,
    grow: (bytes) => void quietly('mount', ['-o', `remount,size=${bytes}`, store]),
    repair: () => {
      unmount(path);
      mounted = false;
      // 0: clean, 1: errors corrected; anything else is a failed repair.
      const fsck = spawnSync('e2fsck', ['-fy', device as string], { encoding: 'utf8' });
      if (fsck.status !== 0 && fsck.status !== 1) throw new Error(`e2fsck exited ${fsck.status}: ${fsck.stdout}${fsck.stderr}`);
      quietly('mount', [...mountOptions, device as string, path]);
      mounted = true;
    },
  };
}

/** A fresh ext4 filesystem of `sizeBytes` on a loop device, mounted under the OS temp dir. */
export function mountScratchVolume(sizeBytes: number): ScratchVolume {
  const { path, remove } = mountExt4(sizeBytes, null);
  return { path, remove };
}

export function canMountScratchVolumes(): boolean {
  try {
    mountScratchVolume(16 * 1024 * 1024).remove();
    return true;
  } catch {
    return false;
  }
}

/**
 * An ext4 volume of `sizeBytes` whose blocks live in a tmpfs of `storeBytes`
 * (a thin-provisioned disk): once the store is full, writes to the volume
 * fail with I/O errors and ext4 goes read-only (errors=remount-ro), as on a
 * datastore that ran out of space under a virtual disk.
 */
export function mountThinVolume(sizeBytes: number, storeBytes: number): ThinVolume {
  return mountExt4(sizeBytes, storeBytes);
}
