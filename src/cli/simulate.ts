import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { readPassphrase } from '../config/load';
import type { SimPair } from '../simulator/simulator';
import type { PointCheck } from '../simulator/verify';
import { WORKLOADS, type WorkloadName } from '../simulator/workload';
import { table } from '../text';
import { UsageError, configFrom, formatBytes, parseDuration, parseSize, printJson, statusLine } from './common';

interface SimulateFlags {
  config?: string;
  url?: string;
  pairs?: string;
  workload: string;
  ioSize: string;
  rate?: string;
  duration?: string;
  items?: string;
  tagEvery: string;
  group?: string;
  tick: string;
  seed: string;
  messageBytes: string;
  compress?: boolean;
  reconnect: boolean;
  resync?: boolean;
  resyncWhenAsked: boolean;
  verify?: string;
  processServerId: string;
  json?: boolean;
}

export function registerSimulate(program: Command): void {
  program
    .command('simulate')
    .description('play a process server: stream synthetic disk workloads into an agent, resume after disconnects, optionally delta-resync and verify')
    .option('--config <file>', "the agent's configuration (URL, certificate, passphrase and pairs come from it)")
    .option('--url <url>', 'agent URL (default: from the config, wss://HOST:PORT)')
    .option('--pairs <list>', 'pairs to stream: id or id:size, comma-separated (default: every image-file pair of the config)')
    .option('--workload <name>', `one of ${WORKLOADS.join(', ')}`, 'random')
    .option('--io-size <size>', 'write size', '64k')
    .option('--rate <size>', 'target rate per second over all pairs (default: flat out)')
    .option('--duration <time>', 'how long to stream changes (e.g. 60, 10m), after any initial copy')
    .option('--items <n>', 'items per pair to stream')
    .option('--tag-every <n>', 'an app-consistent tag every N items (0: none)', '0')
    .option('--group <name>', 'tags carry group values <name>-<n>, shared by the pairs')
    .option('--tick <seconds>', 'tick when a pair is idle this long', '2')
    .option('--seed <n>', 'seed: the same seed gives the same stream', '1')
    .option('--message-bytes <size>', 'records per binary message up to this size', '1M')
    .option('--compress', 'offer permessage-deflate')
    .option('--no-reconnect', 'stop on a dropped connection instead of resuming')
    .option('--resync', 'delta-resync every pair first (checksums, then only the blocks that differ)')
    .option('--no-resync-when-asked', "do not answer the agent's needsResync (by default: an initial copy of a new pair, a delta resync of a known one, and a pair this simulator did not stream to taken over)")
    .option('--verify <n>', 'afterwards, rebuild N points per pair with mtagent recover and compare SHA-256 with the model')
    .option('--process-server-id <id>', 'id sent in the hello', 'ps-sim')
    .option('--json', 'machine-readable report')
    .action(async (f: SimulateFlags) => {
      const config = configFrom(f);
      if (!WORKLOADS.includes(f.workload as WorkloadName)) throw new UsageError(`--workload must be one of ${WORKLOADS.join(', ')}`);
      const pairs: SimPair[] = f.pairs
        ? f.pairs.split(',').map((spec) => {
            const [id, size] = spec.split(':');
            const conf = config.pairs.find((p) => p.id === id);
            const diskBytes = size ? parseSize(size) : conf?.sizeBytes;
            if (!id || !diskBytes) throw new UsageError(`--pairs ${spec}: give the size (id:size) for a pair without sizeBytes in the config`);
            return { id, diskBytes };
          })
        : config.pairs.filter((p) => p.sizeBytes).map((p) => ({ id: p.id, diskBytes: p.sizeBytes as number }));
      if (pairs.length === 0) throw new UsageError('no pairs to stream: give --pairs or configure pairs with sizeBytes');
      const host = config.listen.host === '0.0.0.0' ? '127.0.0.1' : config.listen.host;
      const duration = f.duration ? parseDuration(f.duration) : null;
      const items = f.items ? Number(f.items) : null;
      if (duration === null && items === null && f.workload !== 'fill' && !f.resync) throw new UsageError('give --duration or --items (or --workload fill)');
      // Loaded here, not at start: `mtagent run` has no use for the simulator in its heap.
      const { Simulator } = await import('../simulator/simulator.js');
      const { checkPoint, choosePoints, oldestRetainedSeq } = await import('../simulator/verify.js');
      const line_ = statusLine();
      const sim = new Simulator({
        client: { url: f.url ?? `wss://${host}:${config.listen.port}`, passphrase: readPassphrase(config), processServerId: f.processServerId, ca: readFileSync(config.tls.cert), compress: f.compress ?? false },
        pairs,
        workload: f.workload as WorkloadName,
        ioBytes: parseSize(f.ioSize),
        rateBytesPerSecond: f.rate ? parseSize(f.rate) : null,
        durationSeconds: duration ?? (items === null && f.workload !== 'fill' ? 0 : null),
        items,
        tagEvery: Number(f.tagEvery),
        group: f.group ?? null,
        tickSeconds: Number(f.tick),
        seed: Number(f.seed),
        messageBytes: parseSize(f.messageBytes),
        reconnect: f.reconnect,
        resyncWhenAsked: f.resyncWhenAsked,
        log: f.json ? undefined : (line) => line_.say(`simulate: ${line}`),
      });
      if (f.resync) for (const p of pairs) sim.requestResync(p.id);
      const ticker = setInterval(() => {
        const n = sim.snapshot();
        const copying = n.copying.length > 0 ? `, initial copy of ${n.copying.join(', ')}` : '';
        line_.show(`simulate: ${n.seconds.toFixed(0)}${duration !== null ? `/${duration}` : ''} s, ${n.itemsAcked} items (${formatBytes(n.bytesAcked)}) acknowledged, ${(n.bytesAcked / 1e6 / Math.max(1, n.seconds)).toFixed(1)} MB/s, ${formatBytes(n.unackedBytes)} in flight${copying}`);
      }, 500);
      let report: Awaited<ReturnType<typeof sim.run>>;
      try {
        report = await sim.run();
      } finally {
        clearInterval(ticker);
        line_.clear();
      }
      const checks: PointCheck[] = [];
      if (f.verify) {
        const cli = [process.execPath, process.argv[1] as string];
        const chosen: Array<{ pair: string; point: string; seq: number }> = [];
        // A pair the agent stopped taking (failed over) is no longer the model's disk: not rebuilt against it.
        for (const p of pairs.filter((x) => report.pairs.find((r) => r.pair === x.id)?.endedBy == null)) {
          const oldest = await oldestRetainedSeq(cli, config.configPath, p.id);
          for (const pt of choosePoints(sim.model(p.id), Number(f.verify), Number(f.seed), oldest)) chosen.push({ pair: p.id, ...pt });
        }
        for (const [i, pt] of chosen.entries()) {
          line_.show(`verify: rebuilding ${pt.pair} ${pt.point} (${i + 1} of ${chosen.length})`);
          checks.push(await checkPoint(cli, config.configPath, sim.model(pt.pair), pt.point, pt.seq));
        }
        line_.clear();
      }
      const failed = checks.filter((c) => !c.ok).length;
      if (f.json) printJson({ ...report, resyncs: sim.resyncReports, verified: checks });
      else {
        const rows = [['pair', 'acked seq', 'acked', 'MB/s']];
        for (const p of report.pairs) rows.push([p.pair, String(p.ackedSeq), formatBytes(p.bytesAcked), (p.bytesAcked / 1e6 / report.seconds).toFixed(1)]);
        process.stdout.write(`${table(rows)}\n`);
        process.stdout.write(`${report.itemsAcked} items, ${formatBytes(report.bytesAcked)} acknowledged in ${report.seconds.toFixed(1)} s; ack latency p50 ${report.ackLatencyMs.p50.toFixed(1)} ms, p99 ${report.ackLatencyMs.p99.toFixed(1)} ms (after the first second: p50 ${report.steadyAckLatencyMs.p50.toFixed(1)} ms, p99 ${report.steadyAckLatencyMs.p99.toFixed(1)} ms); ${report.reconnects} reconnects\n`);
        for (const p of report.pairs) if (p.endedBy !== null) process.stdout.write(`${p.pair}: stopped at acked seq ${p.ackedSeq}: ${p.endedBy}\n`);
        for (const r of sim.resyncReports) process.stdout.write(`delta resync ${r.pair}: ${r.differing}/${r.blocks} blocks differed, sent ${formatBytes(r.bytesSent)} of ${formatBytes(r.diskBytes)}\n`);
        for (const c of checks) process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${c.pair} ${c.point} (seq ${c.seq}) ${c.actual ?? ''}${c.error ? `: ${c.error}` : ''}\n`);
        if (checks.length > 0) process.stdout.write(`verify: ${checks.length - failed} passed, ${failed} failed\n`);
      }
      if (failed > 0) process.exitCode = 1;
    });
}
