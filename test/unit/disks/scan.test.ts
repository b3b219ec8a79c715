import { describe, expect, it } from 'vitest';
import { scanDisks } from '../../../src/disks/scan';
import { fakeSysfs } from '../../helpers/fake-sysfs';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();

describe('disks', () => {
  it('lists SCSI disks with their ids and flags the ones without a stable id', () => {
    const root = tempDir();
    fakeSysfs(root);
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
