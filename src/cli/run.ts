import type { Command } from 'commander';
import { createDaemonLogger } from '../log';
import { runDaemon } from '../app/daemon';
import { configFrom } from './common';

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('run the agent in the foreground, logging JSON lines to stdout; SIGTERM/SIGINT stop it cleanly')
    .option('--config <file>', 'configuration file (default /etc/mtagent/agent.yaml)')
    .action(async (opts: { config?: string }) => {
      const config = configFrom(opts);
      process.exitCode = await runDaemon(config, () => createDaemonLogger(config.dataDir));
    });
}
