// /metrics (Prometheus) and /healthz, on metrics.listen.
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { StatusReport } from '../control/operations';
import type { Logger } from '../log';
import { APPLY_PHASES, type ApplyTimings } from '../apply/apply-timings';

export interface MetricsSources {
  status: () => Promise<StatusReport>;
  /** Per pair: write bytes durable and not yet applied (not part of the status report, so read apart). */
  applyLagBytes: () => Array<{ pair: string; bytes: number }>;
  connections: () => number;
  /** Received over the endpoint and not yet durable, all connections; connections not reading because of it. */
  arrivals: () => { heldBytes: number; stoppedConnections: number };
  retentionPolicySeconds: number;
  /** Where the applier's time goes. */
  applyTimings: () => ApplyTimings;
}

/** Upper bounds (seconds) of the ack latency histogram: fine below 20 ms, where a healthy agent on a local disk answers. */
export const ACK_LATENCY_BUCKETS: readonly number[] = [0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1, 2, 5];

/** The agent's metrics. Gauges are read from the status at scrape time; counters and the histogram are fed as things happen. */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly ackLatency: Histogram;
  readonly heartbeatFailures: Counter;
  readonly ingestedBytes: Counter<'pair'>;

  constructor(sources: MetricsSources) {
    const r = this.registry;
    // prom-client's own names begin process_ and nodejs_: mtagent_process_resident_memory_bytes.
    collectDefaultMetrics({ register: r, prefix: 'mtagent_' });
    this.ackLatency = new Histogram({
      name: 'mtagent_ack_latency_seconds',
      help: 'From the arrival of a message to the sending of the acknowledgement that covers its items (once they are durable)',
      buckets: [...ACK_LATENCY_BUCKETS],
      registers: [r],
    });
    this.heartbeatFailures = new Counter({ name: 'mtagent_heartbeat_failures_total', help: 'Heartbeats not delivered', registers: [r] });
    this.ingestedBytes = new Counter({ name: 'mtagent_ingested_bytes_total', help: 'Write payload bytes made durable', labelNames: ['pair'], registers: [r] });
    const perPair = (name: string, help: string, pick: (p: StatusReport['pairs'][number]) => number | null): void => {
      new Gauge({
        name,
        help,
        labelNames: ['pair'],
        registers: [r],
        async collect() {
          this.reset();
          for (const p of (await sources.status()).pairs) {
            const v = pick(p);
            if (v !== null) this.set({ pair: p.pair }, v);
          }
        },
      });
    };
    perPair('mtagent_pair_durable_seq', 'Highest seq durable', (p) => p.durableSeq);
    perPair('mtagent_pair_applied_seq', 'Highest seq applied to the target', (p) => p.appliedSeq);
    perPair('mtagent_pair_rpo_seconds', 'Now minus the source time of the newest durable item', (p) => p.rpoSeconds);
    perPair('mtagent_pair_journal_bytes', "Bytes of the pair's undo history", (p) => p.journalBytes);
    perPair('mtagent_pair_history_seconds', "How much history the pair holds: its latest recovery point's source time minus its oldest's", (p) => p.historySeconds);
    perPair('mtagent_test_failover_active', '1 while a test failover of the pair runs, else 0', (p) => (p.testFailover === null ? 0 : 1));
    perPair('mtagent_test_failover_scratch_bytes', "Bytes the running test failover's own writes hold on the retention volume", (p) => p.testFailover?.scratchBytes ?? null);
    perPair('mtagent_pair_state_ok', '1 when the pair is protected or resyncing, else 0', (p) => (p.state === 'protected' || p.state === 'resyncing' ? 1 : 0));
    new Gauge({
      name: 'mtagent_pair_churn_bytes_per_second',
      help: "Bytes the pair's source writes per second (resync data left out), over the last minute, the last hour, and the peak hour of the last day",
      labelNames: ['pair', 'over'],
      registers: [r],
      async collect() {
        this.reset();
        for (const p of (await sources.status()).pairs) {
          this.set({ pair: p.pair, over: 'minute' }, p.churn.lastMinuteBytesPerSecond);
          this.set({ pair: p.pair, over: 'hour' }, p.churn.lastHourBytesPerSecond);
          this.set({ pair: p.pair, over: 'peak-hour' }, p.churn.peakHourBytesPerSecond);
        }
      },
    });
    const window = (name: string, help: string, pick: (w: StatusReport['window']) => number | null): void => {
      new Gauge({
        name,
        help,
        registers: [r],
        async collect() {
          this.reset();
          const v = pick((await sources.status()).window);
          if (v !== null) this.set(v);
        },
      });
    };
    window('mtagent_retention_window_needed_bytes', "Retention the policy's whole window needs at each pair's peak hourly churn of the last day", (w) => w.neededBytes);
    window('mtagent_retention_window_fits', "1 when the policy's window fits what the agent may use of the retention volume at the peak churn, else 0 (history will be shortened for space)", (w) => (w.fits ? 1 : 0));
    window('mtagent_retention_window_held_seconds', 'The least history a configured pair holds', (w) => w.heldSeconds);
    window('mtagent_retention_shortened_for_space_timestamp_seconds', 'When history was last shortened for space (Unix time)', (w) => (w.shortenedForSpaceAt ? Date.parse(w.shortenedForSpaceAt) / 1000 : null));
    new Gauge({
      name: 'mtagent_pair_apply_lag_bytes',
      help: 'Write bytes durable in the ingest log and not yet applied to the target; ingest waits above the apply lag limit',
      labelNames: ['pair'],
      registers: [r],
      collect() {
        this.reset();
        for (const { pair, bytes } of sources.applyLagBytes()) this.set({ pair }, bytes);
      },
    });
    new Gauge({ name: 'mtagent_history_policy_seconds', help: 'The retention window the policy asks for', registers: [r], collect() { this.set(sources.retentionPolicySeconds); } });
    const retention = (name: string, help: string, pick: (s: StatusReport['retention']) => number): void => {
      new Gauge({ name, help, registers: [r], async collect() { this.set(pick((await sources.status()).retention)); } });
    };
    retention('mtagent_retention_used_bytes', 'Bytes the agent uses on the retention volume', (s) => s.usedBytes);
    retention('mtagent_retention_free_bytes', 'Bytes the agent may still use', (s) => s.freeBytes);
    retention('mtagent_retention_capacity_bytes', 'What the agent may use in all', (s) => s.capacityBytes);
    new Gauge({ name: 'mtagent_connections', help: 'Replication connections', registers: [r], collect() { this.set(sources.connections()); } });
    new Gauge({
      name: 'mtagent_arrival_held_bytes',
      help: 'Received over the replication endpoint and not yet durable, all connections together (connections holding anything stop reading above 64 MiB)',
      registers: [r],
      collect() {
        this.set(sources.arrivals().heldBytes);
      },
    });
    new Counter({
      name: 'mtagent_apply_phase_seconds_total',
      help: "Seconds the applier spent in each phase of its steps (log: batches read back from the ingest log, read: before-images from the targets, undo: making them durable, write and flush: the targets), summed over pairs applied at once",
      labelNames: ['phase'],
      registers: [r],
      collect() {
        const t = sources.applyTimings();
        this.reset();
        for (const phase of APPLY_PHASES) this.inc({ phase }, t.seconds[phase]);
      },
    });
    const timing = (name: string, help: string, pick: (t: ApplyTimings) => number): void => {
      new Counter({
        name,
        help,
        registers: [r],
        collect() {
          this.reset();
          this.inc(pick(sources.applyTimings()));
        },
      });
    };
    timing('mtagent_apply_log_read_bytes_total', 'Bytes of batches the applier read back from the ingest log (they no longer fitted its memory)', (t) => t.logBytesRead);
    timing('mtagent_apply_busy_seconds_total', 'Seconds the applier was at work', (t) => t.busySeconds);
    timing('mtagent_apply_lag_wait_seconds_total', "Seconds appends waited for a pair's applier to come within the apply lag limit, summed over appends", (t) => t.lagWaitSeconds);
    timing('mtagent_apply_before_image_read_bytes_total', 'Bytes read from the targets before writing them: before-images, and what writes leave of an aligned block', (t) => t.beforeImageBytesRead);
    timing('mtagent_apply_uncaptured_bytes_total', 'Bytes of resync data applied without before-images: the pair had no recovery point before the resync to roll back to', (t) => t.uncapturedBytes);
    new Gauge({
      name: 'mtagent_connections_not_reading',
      help: 'Replication connections whose sockets are not read now: the agent is pushing back (journal or applier behind)',
      registers: [r],
      collect() {
        this.set(sources.arrivals().stoppedConnections);
      },
    });
  }
}

export async function startMetricsServer(listen: string, metrics: AgentMetrics, sources: MetricsSources, log: Logger): Promise<Server> {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(listen.slice(i + 1));
  const server = createServer((req, res) => {
    void (async () => {
      if (req.url === '/metrics') {
        const body = await metrics.registry.metrics();
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(body);
        return;
      }
      if (req.url === '/healthz') {
        const s = await sources.status();
        const problems = [...s.retention.problems, ...s.pairs.filter((p) => p.state === 'error' || p.state === 'target-unavailable').map((p) => `${p.pair}: ${p.state}${p.lastError ? `: ${p.lastError}` : ''}`)];
        res.writeHead(problems.length === 0 ? 200 : 503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ status: problems.length === 0 ? 'ok' : 'degraded', problems }));
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('mtagent: /metrics or /healthz\n');
    })().catch((err: unknown) => {
      log.error({ err }, 'metrics request failed');
      res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
