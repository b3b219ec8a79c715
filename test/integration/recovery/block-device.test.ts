// Recovery onto an existing block device (`recover --out DEVICE --force`),
// with a real loop device where this machine lets us make one (root, /dev/loop*).
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { rebuild } from '../../../src/recovery/rebuild';
import { DiskModel } from '../../helpers/disk-model';
import { MiB, fixture, openEngine, write } from '../../helpers/engine-fixture';
import { attachLoopDevice, canMakeLoopDevices, detachLoopDevice } from '../../helpers/loop-volume';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();

describe('recover onto a block device', () => {
  it.runIf(canMakeLoopDevices())('writes the image onto an existing device only with force, and it equals the model', async () => {
    const root = tempDir();
    const DISK = 4 * MiB;
    const f = fixture(root, [{ id: 'p', sizeBytes: DISK }]);
    const model = new DiskModel(DISK);
    const e = await openEngine(f);
    const backing = join(root, 'device-backing.img');
    writeFileSync(backing, Buffer.alloc(0));
    truncateSync(backing, 8 * MiB); // the device is bigger than the disk: the rest is left alone
    const dev = attachLoopDevice(backing);
    try {
      await e.openPair('p', DISK, 512);
      for (let s = 1; s <= 20; s++) {
        const it = write('p', s, ((s * 3) % 64) * 64 * 1024, 64 * 1024);
        model.add(it);
        await e.append('p', [it]);
      }
      await e.settle();
      await expect(rebuild(e, 'p', 'seq:12', dev)).rejects.toMatchObject({ code: 'output-exists' });
      const r = await rebuild(e, 'p', 'seq:12', dev, { force: true });
      expect(r.sha256).toBe(model.sha256At(12));
      const fd = openSync(dev, 'r');
      const back = Buffer.alloc(DISK);
      readSync(fd, back, 0, DISK, 0);
      closeSync(fd);
      expect(createHash('sha256').update(back).digest('hex')).toBe(model.sha256At(12));
    } finally {
      await e.close();
      detachLoopDevice(dev);
    }
  });
});
