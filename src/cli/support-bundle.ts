import type { Command } from 'commander';
import { configFrom, printJson, withAgent } from './common';

export function registerSupportBundle(program: Command): void {
  program
    .command('support-bundle')
    .description('logs, config (secrets redacted), metadata, versions and status --json in one tar.gz; never a secret')
    .requiredOption('--out <file>', 'the .tar.gz to write')
    .option('--config <file>', 'configuration file')
    .option('--json', 'machine-readable output')
    .action(async (o: { out: string; config?: string; json?: boolean }) => {
      const config = configFrom(o);
      let status: unknown = null;
      let statusError: string | null = null;
      try {
        status = await withAgent(config, 'status', {});
      } catch (err) {
        statusError = err instanceof Error ? err.message : String(err);
      }
      // Loaded here, not at start: `mtagent run` has no use for tar in its heap.
      const { writeSupportBundle } = await import('../support/bundle.js');
      const files = await writeSupportBundle({ config, status, statusError }, o.out);
      if (o.json) printJson({ out: o.out, files });
      else process.stdout.write(`${o.out}: ${files.join(', ')}\n`);
    });
}
