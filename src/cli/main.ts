#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { packageVersion } from '../package-root';
import { registerCheckRetention } from './check-retention';
import { EXIT_USAGE, reportError } from './common';
import { registerDisks } from './disks';
import { registerInit } from './init';
import { registerOperations } from './operations';
import { registerRun } from './run';
import { registerSimulate } from './simulate';
import { registerStart } from './start';
import { registerSupportBundle } from './support-bundle';

function buildProgram(): Command {
  const program = new Command();
  program
    .name('mtagent')
    .description('Master-target replication agent: receives changed blocks over TLS, keeps every recovery point of the retention window')
    .version(packageVersion, '-V, --version', 'print the version and exit')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  registerInit(program);
  registerRun(program);
  registerStart(program);
  registerOperations(program);
  registerCheckRetention(program);
  registerDisks(program);
  registerSupportBundle(program);
  registerSimulate(program);
  for (const c of program.commands) c.exitOverride();
  return program;
}

// A reader that went away (| head) is not an error of ours.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

buildProgram()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : EXIT_USAGE;
      return;
    }
    process.exitCode = reportError(err);
  });
