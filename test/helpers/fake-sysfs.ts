// A tree shaped like /sys/block and /dev/disk/by-id on a VMware guest: sda
// with a stable NAA id (disk.EnableUUID=TRUE), sdb without one, and a loop
// device to be passed over. What a SCSI disk is cannot exist on a test machine.
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function fakeSysfs(root: string, options: { unstable: boolean } = { unstable: true }): void {
  const disk = (name: string, sectors: number, vendor: string, model: string): void => {
    mkdirSync(join(root, 'sys', 'block', name, 'device'), { recursive: true });
    writeFileSync(join(root, 'sys', 'block', name, 'size'), `${sectors}\n`);
    writeFileSync(join(root, 'sys', 'block', name, 'device', 'vendor'), `${vendor}  \n`);
    writeFileSync(join(root, 'sys', 'block', name, 'device', 'model'), `${model}\n`);
  };
  disk('sda', 209715200, 'VMware', 'Virtual disk');
  mkdirSync(join(root, 'sys', 'block', 'loop0'), { recursive: true });
  const byId = join(root, 'dev', 'disk', 'by-id');
  mkdirSync(byId, { recursive: true });
  symlinkSync('../../sda', join(byId, 'scsi-36000c29f8a1b2c3d4e5f60718293a4b5'));
  symlinkSync('../../sda', join(byId, 'wwn-0x6000c29f8a1b2c3d4e5f60718293a4b5'));
  symlinkSync('../../sda1', join(byId, 'scsi-36000c29f8a1b2c3d4e5f60718293a4b5-part1'));
  if (options.unstable) {
    disk('sdb', 20971520, 'VMware', 'Virtual disk');
    symlinkSync('../../sdb', join(byId, 'scsi-0VMware_Virtual_disk_0000000000000001'));
  }
}
