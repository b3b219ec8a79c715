// `mtagent test-failover`: a DR drill. The running daemon serves the disk at
// a point as an NBD export while replication goes on; this command only asks
// it, and without a daemon it says so and exits 1.
import type { Command } from 'commander';
import { callDaemon } from '../control/socket';
import { MtagentError } from '../errors';
import type { TestInfo } from '../testfailover/manager';
import { table } from '../text';
import { UsageError, configFrom, formatBytes, parseSize, printJson } from './common';

interface Common {
  config?: string;
  json?: boolean;
}

async function askDaemon(o: Common, op: string, args: Record<string, unknown>): Promise<unknown> {
  const config = configFrom(o);
  const r = await callDaemon(config.dataDir, op, args);
  if (r === undefined) {
    throw new MtagentError('daemon-not-running', `test-failover is served by the running daemon, and none answers on ${config.dataDir}/control.sock: start it (systemctl start mtagent, or 'mtagent run'), then try again`);
  }
  return r.result;
}

function describe(t: TestInfo): string {
  return `${t.pair} at seq ${t.seq} (${t.time ?? 'no time'})${t.readOnly ? ', read-only' : ''}: ${t.uri}`;
}

function pairOrGroup(pair: string | undefined, group: string | undefined): Record<string, string> {
  if (pair && group) throw new UsageError('give a pair or --group, not both');
  if (!pair && !group) throw new UsageError('give the pair, or --group GROUP');
  return group ? { group } : { pair: pair as string };
}

export function registerTestFailover(program: Command): void {
  const cmd = program.command('test-failover').description('rehearse a recovery: the disk at a point as a live NBD block device, while replication goes on');

  cmd
    .command('start')
    .argument('[pair]')
    .description('serve the disk at POINT as an NBD export (the daemon serves it; prints its URI)')
    .requiredOption('--at <point>', 'latest, latest-app, an ISO-8601 time, seq:N or tag:NAME (a group: latest-app, tag:NAME or a time)')
    .option('--group <group>', 'every pair of a replication group at one common point, one export each')
    .option('--listen <host:port>', 'serve over TCP with TLS (NBD STARTTLS) instead of the Unix socket')
    .option('--read-only', 'refuse writes (EPERM)')
    .option('--scratch-bytes <size>', "cap on the test's own writes (64G, 1T; default 10 % of the retention volume)")
    .option('--config <file>', 'configuration file')
    .option('--json', 'machine-readable output')
    .action(async (pair: string | undefined, o: Common & { at: string; group?: string; listen?: string; readOnly?: boolean; scratchBytes?: string }) => {
      const args = {
        ...pairOrGroup(pair, o.group),
        at: o.at,
        listen: o.listen ?? null,
        readOnly: o.readOnly ?? false,
        scratchBytes: o.scratchBytes === undefined ? null : parseSize(o.scratchBytes),
      };
      const r = await askDaemon(o, 'test-failover-start', args);
      const tests = (Array.isArray(r) ? r : [r]) as TestInfo[];
      if (o.json) {
        printJson(r);
        return;
      }
      for (const t of tests) process.stdout.write(`${describe(t)}\n`);
      const first = tests[0];
      if (first) {
        process.stdout.write(
          `attach: nbdfuse MOUNTDIR/disk '${first.uri}' (then losetup + mount), or qemu -drive 'file=${first.uri},format=raw'\n` +
            `scratch quota ${formatBytes(first.quotaBytes)}; end it with: mtagent test-failover stop ${o.group ? `--group ${o.group}` : first.pair}\n`,
        );
      }
    });

  cmd
    .command('stop')
    .argument('[pair]')
    .description("end a test: its clients are disconnected, its scratch deleted, its point released")
    .option('--group <group>', "end the tests of every pair of the group")
    .option('--config <file>', 'configuration file')
    .option('--json', 'machine-readable output')
    .action(async (pair: string | undefined, o: Common & { group?: string }) => {
      const r = await askDaemon(o, 'test-failover-stop', pairOrGroup(pair, o.group));
      const stopped = (Array.isArray(r) ? r : [r]) as Array<{ pair: string; seq: number }>;
      if (o.json) printJson(r);
      else for (const s of stopped) process.stdout.write(`${s.pair}: test failover stopped; its scratch is deleted and its point released\n`);
    });

  cmd
    .command('list')
    .description('running tests: pair, point, URI, scratch used and quota, since when, clients connected')
    .option('--config <file>', 'configuration file')
    .option('--json', 'machine-readable output')
    .action(async (o: Common) => {
      const tests = (await askDaemon(o, 'test-failover-list', {})) as TestInfo[];
      if (o.json) {
        printJson(tests);
        return;
      }
      if (tests.length === 0) {
        process.stdout.write('no test failover runs\n');
        return;
      }
      const rows = [['pair', 'seq', 'time', 'uri', 'scratch', 'quota', 'since', 'clients']];
      for (const t of tests) rows.push([t.pair, String(t.seq), t.time ?? '-', t.uri, formatBytes(t.scratchBytes), formatBytes(t.quotaBytes), t.since, String(t.clients)]);
      process.stdout.write(`${table(rows)}\n`);
    });
}
