import type { Command } from 'commander';
import { scanDisks } from '../disks/scan';
import { table } from '../text';
import { formatBytes, printJson } from './common';

export function registerDisks(program: Command): void {
  program
    .command('disks')
    .description("the host's SCSI disks with their ids, size, and whether each id is stable (VMware disk.EnableUUID=TRUE)")
    .option('--sysfs-root <dir>', 'read <dir>/sys/block and <dir>/dev/disk/by-id instead of the host (tests)', '/')
    .option('--json', 'machine-readable output')
    .action((o: { sysfsRoot: string; json?: boolean }) => {
      const disks = scanDisks(o.sysfsRoot);
      // A disk whose id may change under a pair is a failure, whatever the output's form.
      if (disks.some((d) => !d.stable)) process.exitCode = 1;
      if (o.json) {
        printJson(disks);
        return;
      }
      const rows = [['device', 'size', 'vendor / model', 'stable id', 'stable', 'note']];
      for (const d of disks) rows.push([d.device, formatBytes(d.sizeBytes), `${d.vendor ?? '?'} ${d.model ?? ''}`.trim(), d.stableId ?? (d.ids[0] ?? '-'), d.stable ? 'yes' : 'NO', d.note ?? '']);
      process.stdout.write(`${table(rows)}\n`);
    });
}
