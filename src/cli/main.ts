#!/usr/bin/env node
import { Command } from 'commander';
import { packageVersion } from '../package-root';

function buildProgram(): Command {
  const program = new Command();
  program
    .name('mtagent')
    .description('Master-target replication agent: receives changed blocks over TLS, keeps every recovery point of the retention window')
    .version(packageVersion, '-V, --version', 'print the version and exit');
  program
    .command('start')
    .description('create a working installation under ./mtagent-home on first start and run the agent on it')
    .action(() => {
      process.stderr.write(
        'mtagent: the daemon is not built yet: this release has the native I/O layer only (see README, "Status").\n',
      );
      process.exitCode = 1;
    });
  return program;
}

buildProgram()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    process.stderr.write(`mtagent: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
