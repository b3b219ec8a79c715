// Commands that need the agent's coordination: through the daemon when it
// runs, else on the retention volume directly.
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { PointsReport, RecoverResult, StatusReport } from '../control/operations';
import type { VerifyResult } from '../recovery/verify';
import { table } from '../text';
import { EXIT_INTERRUPTED, UsageError, cancelOnInterrupt, configFrom, formatBytes, printJson, progressBar, wasCancelled, withAgent } from './common';

interface Common {
  config?: string;
  json?: boolean;
}

function rpo(s: number | null, health: string | null): string {
  return s === null ? '-' : `${s.toFixed(1)} s ${health ?? ''}`.trim();
}

export function printStatus(r: StatusReport): void {
  process.stdout.write(`agent ${r.agentId} ${r.version} on ${r.hostname}, ${r.daemon ? `running for ${r.uptimeSeconds} s` : 'daemon not running'}\n`);
  process.stdout.write(
    `retention ${r.retention.path}: ${formatBytes(r.retention.usedBytes)} used of ${formatBytes(r.retention.capacityBytes)}, ${formatBytes(r.retention.freeBytes)} free${r.retention.healthy ? '' : ` — ${r.retention.problems.join('; ')}`}\n`,
  );
  if (r.processServers.length > 0) process.stdout.write(`process servers: ${r.processServers.map((p) => `${p.id} (${p.address})`).join(', ')}\n`);
  if (r.heartbeat) {
    const h = r.heartbeat;
    process.stdout.write(`heartbeat: last success ${h.lastSuccess ?? 'never'}${h.consecutiveFailures > 0 ? `, ${h.consecutiveFailures} failing in a row: ${h.lastError}` : ''}\n`);
  }
  const w = r.window;
  const hours = (s: number): string => `${(s / 3600).toFixed(s < 36_000 ? 1 : 0)} h`;
  process.stdout.write(
    `window: ${w.heldSeconds === null ? 'no history yet' : `${hours(w.heldSeconds)} held`} of ${hours(w.policySeconds)}; at the peak hourly churn it needs ${formatBytes(w.neededBytes)} of ${formatBytes(w.capacityBytes)}: ${w.fits ? 'fits' : 'WILL NOT FIT (give the retention volume more space, or shorten policy.retentionSeconds)'}${w.shortenedForSpaceAt ? `; history last shortened for space ${w.shortenedForSpaceAt}` : ''}\n`,
  );
  const rate = (n: number): string => `${formatBytes(n)}/s`;
  const rows = [['pair', 'group', 'state', 'durable', 'applied', 'oldest point', 'latest point', 'latest app point', 'RPO', 'journal', 'churn 1 min / 1 h / peak h']];
  for (const p of r.pairs) {
    const c = p.churn;
    rows.push([p.pair, p.group ?? '-', p.state, String(p.durableSeq), String(p.appliedSeq), p.oldestPoint ?? '-', p.latestPoint ?? '-', p.latestAppPoint ?? '-', rpo(p.rpoSeconds, p.rpoHealth), formatBytes(p.journalBytes), `${rate(c.lastMinuteBytesPerSecond)} / ${rate(c.lastHourBytesPerSecond)} / ${rate(c.peakHourBytesPerSecond)}`]);
  }
  process.stdout.write(`${table(rows)}\n`);
  // Why each pair that is not protected is not, on a line of its own: the reasons are long.
  for (const p of r.pairs) if (p.why !== null) process.stdout.write(`${p.pair}: ${p.why}\n`);
  for (const p of r.pairs) {
    const t = p.testFailover;
    if (t !== null) process.stdout.write(`${p.pair}: test failover at seq ${t.seq} (${t.time ?? 'no time'}) since ${t.since}, ${t.uri}, scratch ${formatBytes(t.scratchBytes)} of ${formatBytes(t.quotaBytes)}, ${t.clients} client(s)\n`);
  }
  const ended = r.events.filter((e) => e.kind === 'test-failover-ended');
  for (const e of ended) process.stdout.write(`${e.pair ?? '-'}: ${e.message} (${e.time})\n`);
}

function rmdirQuietly(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // Not empty, or gone: left as it is.
  }
}

export function registerOperations(program: Command): void {
  program
    .command('status')
    .description('agent, retention and one row per pair, as in the heartbeat')
    .option('--config <file>', 'configuration file')
    .option('--json', 'machine-readable output')
    .action(async (o: Common) => {
      const r = (await withAgent(configFrom(o), 'status', {})) as StatusReport;
      if (o.json) printJson(r);
      else printStatus(r);
    });

  program
    .command('points')
    .argument('<pair>')
    .description('oldest and latest recoverable time, resync windows, and every tag')
    .option('--config <file>', 'configuration file')
    .option('--json', 'machine-readable output')
    .action(async (pair: string, o: Common) => {
      const r = (await withAgent(configFrom(o), 'points', { pair })) as PointsReport;
      if (o.json) {
        printJson(r);
        return;
      }
      const oldest = r.oldest === null ? 'no recovery point yet' : `oldest seq:${r.oldest.seq} ${r.oldest.time ?? ''}`;
      process.stdout.write(`${r.pair}: ${oldest}, latest seq:${r.latest.seq} ${r.latest.time ?? ''}\n`);
      if (r.notApplied) process.stdout.write(`seq ${r.notApplied.fromSeq}..${r.notApplied.toSeq} are durable but not on the target yet, and applying is paused (${r.notApplied.reason}): recoverable once it resumes\n`);
      for (const w of r.resyncWindows) process.stdout.write(`resync window seq ${w.startSeq}..${w.endSeq ?? '(open)'} ${w.startTime ?? ''} .. ${w.endTime ?? ''}\n`);
      const rows = [['time', 'kind', 'name', 'group', 'seq']];
      for (const t of r.tags) rows.push([t.time ?? '-', t.kind, t.name, t.group ?? '-', String(t.seq)]);
      process.stdout.write(`${table(rows)}\n`);
    });

  program
    .command('recover')
    .argument('[pair]')
    .description("write the target's content at POINT to a new sparse file or a device (or, with --group, every pair of a group into DIR)")
    .requiredOption('--at <point>', 'latest, latest-app, an ISO-8601 time, seq:N or tag:NAME')
    .requiredOption('--out <path>', 'image file or block device (with --group: a folder)')
    .option('--group <group>', 'recover every pair of a replication group at one common point')
    .option('--force', 'overwrite an existing file or device')
    .option('--config <file>', 'configuration file')
    .option('--json', 'machine-readable output')
    .action(async (pair: string | undefined, o: Common & { at: string; out: string; group?: string; force?: boolean }) => {
      const config = configFrom(o);
      if (o.group && pair) throw new UsageError('give a pair or --group, not both');
      if (!o.group && !pair) throw new UsageError('give the pair to recover, or --group GROUP');
      const bar = progressBar('recover');
      const interrupt = cancelOnInterrupt();
      const out = resolve(o.out);
      const outWasThere = existsSync(out);
      try {
        if (o.group) {
          mkdirSync(out, { recursive: true });
          const rs = (await withAgent(config, 'recover-group', { group: o.group, at: o.at, out, force: o.force ?? false }, bar.progress, interrupt.signal)) as RecoverResult[];
          bar.stop();
          if (o.json) printJson(rs);
          else for (const r of rs) process.stdout.write(`${r.pair} seq ${r.seq} ${r.time ?? ''} ${r.path} sha256 ${r.sha256}\n`);
          return;
        }
        const r = (await withAgent(config, 'recover', { pair, at: o.at, out, force: o.force ?? false }, bar.progress, interrupt.signal)) as RecoverResult;
        bar.stop();
        if (o.json) printJson(r);
        else process.stdout.write(`${r.pair} at seq ${r.seq} (${r.time ?? 'no time'}) written to ${r.path}\nsha256 ${r.sha256}\n`);
      } catch (err) {
        // The folder a group recovery made for its images goes with them, whatever stopped it.
        if (o.group && !outWasThere) rmdirQuietly(out);
        if (!wasCancelled(err, interrupt.signal)) throw err;
        bar.stop();
        const left = outWasThere ? (o.group ? '' : `; ${out} was being overwritten and is not whole`) : existsSync(out) ? `; ${out} is left` : '; nothing was left behind';
        process.stderr.write(`mtagent: recover cancelled${left}\n`);
        process.exitCode = EXIT_INTERRUPTED;
      } finally {
        bar.stop();
        interrupt.dispose();
      }
    });

  program
    .command('failover')
    .argument('<pair>')
    .description('stop replication of the pair and roll its target disk itself back to POINT')
    .requiredOption('--at <point>', 'latest, latest-app, an ISO-8601 time, seq:N or tag:NAME')
    .option('--config <file>', 'configuration file')
    .option('--json', 'machine-readable output')
    .action(async (pair: string, o: Common & { at: string }) => {
      const r = (await withAgent(configFrom(o), 'failover', { pair, at: o.at })) as { pair: string; seq: number; time: string | null };
      if (o.json) printJson(r);
      else process.stdout.write(`${r.pair} failed over: target rolled back to seq ${r.seq} (${r.time ?? 'no time'}); replication stopped until 'mtagent commit ${r.pair}'\n`);
    });

  program
    .command('commit')
    .argument('<pair>')
    .description("after a failover: drop the pair's retention; the next open needs a resync")
    .option('--config <file>', 'configuration file')
    .option('--json', 'machine-readable output')
    .action(async (pair: string, o: Common) => {
      const r = await withAgent(configFrom(o), 'commit', { pair });
      if (o.json) printJson(r);
      else process.stdout.write(`${pair} committed: retention dropped; the process server must resync it\n`);
    });

  program
    .command('verify')
    .argument('<pair>')
    .description("read the pair's retention end to end, check every crc and the metadata")
    .option('--config <file>', 'configuration file')
    .option('--json', 'machine-readable output')
    .action(async (pair: string, o: Common) => {
      const config = configFrom(o);
      const bar = progressBar('verify');
      const interrupt = cancelOnInterrupt();
      let r: VerifyResult;
      try {
        r = (await withAgent(config, 'verify', { pair }, bar.progress, interrupt.signal)) as VerifyResult;
      } catch (err) {
        if (!wasCancelled(err, interrupt.signal)) throw err;
        bar.stop();
        process.stderr.write(`mtagent: verify of ${pair} cancelled\n`);
        process.exitCode = EXIT_INTERRUPTED;
        return;
      } finally {
        bar.stop();
        interrupt.dispose();
      }
      if (o.json) printJson(r);
      else if (r.ok) process.stdout.write(`${pair}: ok — ${r.segments} undo segments, ${r.records} records, ${formatBytes(r.bytes)} checked\n`);
      else process.stdout.write(`${pair}: BAD — ${r.problem}\n`);
      if (!r.ok) process.exitCode = 1;
    });

  const pairCmd = program.command('pair').description('pair maintenance');
  pairCmd
    .command('purge')
    .argument('<pair>')
    .description('delete retention and metadata of a pair no longer in the config')
    .option('--config <file>', 'configuration file')
    .option('--json', 'machine-readable output')
    .action(async (pair: string, o: Common) => {
      const r = await withAgent(configFrom(o), 'purge', { pair });
      if (o.json) printJson(r);
      else process.stdout.write(`${pair}: retention and metadata deleted\n`);
    });
}
