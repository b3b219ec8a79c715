import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanDisks } from '../../../src/disks/scan';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();

/** A fixture shaped like /sys/block and /dev/disk/by-id on a VMware guest. */
function fixture(root: string): void {
  const disk = (name: string, sectors: number, vendor: string, model: string): void => {
    mkdirSync(join(root, 'sys', 'block', name, 'device'), { recursive: true });
    writeFileSync(join(root, 'sys', 'block', name, 'size'), `${sectors}\n`);
    writeFileSync(join(root, 'sys', 'block', name, 'device', 'vendor'), `${vendor}  \n`);
    writeFileSync(join(root, 'sys', 'block', name, 'device', 'model'), `${model}\n`);
  };
  disk('sda', 209715200, 'VMware', 'Virtual disk');
  disk('sdb', 20971520, 'VMware', 'Virtual disk');
  mkdirSync(join(root, 'sys', 'block', 'loop0'), { recursive: true });
  const byId = join(root, 'dev', 'disk', 'by-id');
  mkdirSync(byId, { recursive: true });
  symlinkSync('../../sda', join(byId, 'scsi-36000c29f8a1b2c3d4e5f60718293a4b5'));
  symlinkSync('../../sda', join(byId, 'wwn-0x6000c29f8a1b2c3d4e5f60718293a4b5'));
  symlinkSync('../../sda1', join(byId, 'scsi-36000c29f8a1b2c3d4e5f60718293a4b5-part1'));
  symlinkSync('../../sdb', join(byId, 'scsi-0VMware_Virtual_disk_0000000000000001'));
}

describe('disks', () => {
  it('lists SCSI disks with their ids and flags the ones without a stable id', () => {
    const root = tempDir();
    fixture(root);
    const disks = scanDisks(root);
    expect(disks.map((d) => d.device)).toEqual(['/dev/sda', '/dev/sdb']);
    expect(disks[0]).toMatchObject({ sizeBytes: 100 * 1024 ** 3, vendor: 'VMware', model: 'Virtual disk', stable: true, stableId: 'scsi-36000c29f8a1b2c3d4e5f60718293a4b5', note: null });
    expect(disks[0]?.ids).toHaveLength(2);
    expect(disks[1]).toMatchObject({ sizeBytes: 10 * 1024 ** 3, stable: false, stableId: null, note: expect.stringContaining('disk.EnableUUID=TRUE') });
  });

  it('reads nothing where there is nothing', () => {
    expect(scanDisks(tempDir())).toEqual([]);
  });
});
