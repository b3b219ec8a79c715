// `mtagent disks`: the host's SCSI disks, their ids and whether each id is
// stable. A VMware disk gets a stable NAA id (scsi-3…, wwn-0x…) only when the
// VM has disk.EnableUUID=TRUE; without it, a target's /dev/disk/by-id path can
// change, and a pair could be applied to the wrong disk.
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';

export interface DiskInfo {
  device: string;
  sizeBytes: number;
  vendor: string | null;
  model: string | null;
  ids: string[];
  /** The id to put in a pair's target, if one is stable. */
  stableId: string | null;
  stable: boolean;
  note: string | null;
}

const SKIP = /^(loop|ram|zram|dm-|md|sr|fd)/;

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

export function isStableId(id: string): boolean {
  return id.startsWith('scsi-3') || id.startsWith('wwn-0x') || id.startsWith('nvme-eui.') || id.startsWith('nvme-nguid');
}

/** Reads `<root>/sys/block` and `<root>/dev/disk/by-id` (root is / on a real host). */
export function scanDisks(root = '/'): DiskInfo[] {
  const blockDir = join(root, 'sys', 'block');
  const byIdDir = join(root, 'dev', 'disk', 'by-id');
  const idsOf = new Map<string, string[]>();
  if (existsSync(byIdDir)) {
    for (const id of readdirSync(byIdDir).sort()) {
      let target: string;
      try {
        target = basename(readlinkSync(join(byIdDir, id)));
      } catch {
        continue;
      }
      if (/-part\d+$/.test(id)) continue;
      idsOf.set(target, [...(idsOf.get(target) ?? []), id]);
    }
  }
  const out: DiskInfo[] = [];
  const devices = existsSync(blockDir) ? readdirSync(blockDir).filter((d) => !SKIP.test(d)).sort() : [];
  for (const device of devices) {
    const sectors = Number(read(join(blockDir, device, 'size')) ?? 0);
    const vendor = read(join(blockDir, device, 'device', 'vendor'));
    const model = read(join(blockDir, device, 'device', 'model'));
    const ids = idsOf.get(device) ?? [];
    const stableId = ids.find(isStableId) ?? null;
    const vmware = (vendor ?? '').toLowerCase().includes('vmware');
    out.push({
      device: `/dev/${device}`,
      sizeBytes: sectors * 512,
      vendor,
      model,
      ids,
      stableId,
      stable: stableId !== null,
      note:
        stableId !== null
          ? null
          : vmware
            ? 'no stable SCSI id: set disk.EnableUUID=TRUE in the VM advanced settings, then reboot'
            : 'no stable id (no NAA/WWN/EUI): a target named by this disk may point elsewhere after a reboot',
    });
  }
  return out;
}
