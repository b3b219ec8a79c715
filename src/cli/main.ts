#!/usr/bin/env node
import { Command, CommanderError, type OutputConfiguration } from 'commander';
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
import { registerTestFailover } from './test-failover';

function buildProgram(): Command {
  const program = new Command();
  program
    .name('mtagent')
    .description('Master-target replication agent: receives changed blocks over TLS, keeps every recovery point of the retention window')
    .version(packageVersion, '-V, --version', 'print the version and exit')
    .exitOverride()
    .configureOutput(outputFor([]));
  program.addHelpText(
    'after',
    `
Every command that works on an installation takes --config FILE (default
/etc/mtagent/agent.yaml, or $MTAGENT_CONFIG); --json gives machine-readable
output. 'mtagent COMMAND --help' tells a command's own options.

POINT is latest, latest-app (the newest app-consistent tag), an ISO-8601
time (the newest state at or before it), seq:N, or tag:NAME. For a group:
latest-app, tag:NAME or a time.

Exit codes: 0 success, 1 the operation failed, 2 bad usage or configuration,
130 interrupted (Ctrl-C).`,
  );
  registerInit(program);
  registerRun(program);
  registerStart(program);
  registerOperations(program);
  registerTestFailover(program);
  registerCheckRetention(program);
  registerDisks(program);
  registerSupportBundle(program);
  registerSimulate(program);
  configureAll(program, []);
  return program;
}

/** Commander's own errors speak as every error of ours: one line, "mtagent: …", and where to look. */
function outputFor(path: readonly string[]): OutputConfiguration {
  return {
    writeErr: (s) => process.stderr.write(s),
    outputError: (s, write) => write(`mtagent: ${s.trim().replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')} (see mtagent ${[...path, '--help'].join(' ')})\n`),
  };
}

function configureAll(command: Command, path: readonly string[]): void {
  for (const c of command.commands) {
    const here = [...path, c.name()];
    c.exitOverride();
    c.configureOutput(outputFor(here));
    configureAll(c, here);
  }
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
