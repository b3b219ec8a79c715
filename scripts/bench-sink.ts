// bench:ingest's baselines: a bare wss server speaking the same protocol that
// only parses records and acks them at once (no journal, no CRC check); or,
// given a file, one that first makes each message durable there (O_DIRECT
// write and fdatasync, messages that arrive meanwhile taken together): the
// least any agent that acks only what is flushed can do on this disk.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { WebSocketServer } from 'ws';
import { MAX_MESSAGE_BYTES, REPLICATE_PATH, WINDOW_BYTES } from '../src/protocol/constants';
import { parseRecords } from '../src/protocol/records';
import { BlockFile, alignedBuffer } from '../src/native';
import { ACK_LATENCY_BUCKETS } from '../src/metrics/server';
import { bucketOf } from './bench/stats';

const [certPath, keyPath, portArg, flushPath] = process.argv.slice(2);

// From a message's arrival to its acks handed to the socket, counted in the
// agent's own ack latency buckets. SIGUSR2 starts the count again; SIGUSR1
// prints it as one line, "held {counts}", for bench:ingest.
let held = new Array<number>(ACK_LATENCY_BUCKETS.length + 1).fill(0);
process.on('SIGUSR2', () => {
  held = held.map(() => 0);
});
process.on('SIGUSR1', () => process.stdout.write(`held ${JSON.stringify(held)}\n`));
function countHeld(arrived: number): void {
  const b = bucketOf(ACK_LATENCY_BUCKETS, (performance.now() - arrived) / 1000);
  held[b] = (held[b] as number) + 1;
}

/** Runs `ack` once `data` is durable in the file: one write and one flush for all that waits. */
type Durable = (data: Buffer, ack: () => void) => void;

interface Waiting {
  data: Buffer;
  ack: () => void;
}

async function flushingLog(path: string): Promise<Durable> {
  const file = await BlockFile.open(path, { create: true, direct: true });
  // Room for a client's whole window and one message more; untouched pages cost no memory.
  const staging = alignedBuffer(WINDOW_BYTES + MAX_MESSAGE_BYTES, false);
  const region = 1024 * 1024 * 1024;
  let at = 0;
  const waiting: Waiting[] = [];
  let busy = false;
  const commit = async (): Promise<void> => {
    if (busy || waiting.length === 0) return;
    busy = true;
    const taken: Waiting[] = [];
    let bytes = 0;
    while (waiting.length > 0 && bytes + (waiting[0] as Waiting).data.length <= staging.length) {
      const w = waiting.shift() as Waiting;
      bytes += w.data.copy(staging, bytes);
      taken.push(w);
    }
    const length = Math.ceil(bytes / 4096) * 4096;
    if (at + length > region) at = 0;
    await file.write(staging.subarray(0, length), at);
    await file.datasync();
    at += length;
    for (const w of taken) w.ack();
    busy = false;
    void commit();
  };
  return (data, ack) => {
    waiting.push({ data, ack });
    void commit();
  };
}

async function main(): Promise<void> {
  const durable: Durable = flushPath ? await flushingLog(flushPath) : (_data, ack) => ack();
  const https = createServer({ cert: readFileSync(certPath as string), key: readFileSync(keyPath as string) });
  const wss = new WebSocketServer({ server: https, path: REPLICATE_PATH, maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false });
  wss.on('connection', (ws) => {
    let nextStream = 1;
    ws.send(JSON.stringify({ type: 'challenge', protocol: 1, agentId: 'sink', nonce: '0'.repeat(64) }));
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        const arrived = performance.now();
        const last = new Map<number, number>();
        for (const r of parseRecords(data as Buffer)) last.set(r.stream, r.seq);
        durable(data as Buffer, () => {
          for (const [stream, seq] of last) ws.send(JSON.stringify({ type: 'ack', stream, durableSeq: seq }));
          countHeld(arrived);
        });
        return;
      }
      const m = JSON.parse(String(data)) as { type: string; pair?: string; stream?: number; seq?: number };
      if (m.type === 'hello') ws.send(JSON.stringify({ type: 'welcome', sessionId: 'sink', windowBytes: WINDOW_BYTES }));
      else if (m.type === 'open') ws.send(JSON.stringify({ type: 'opened', pair: m.pair, stream: nextStream++, durableSeq: 0, needsResync: true }));
      else if (m.type === 'close') ws.send(JSON.stringify({ type: 'closed', stream: m.stream, durableSeq: 0 }));
      else if (m.seq !== undefined) ws.send(JSON.stringify({ type: 'ack', stream: m.stream, durableSeq: m.seq }));
    });
  });
  https.listen(Number(portArg), '127.0.0.1', () => process.stdout.write('sink ready\n'));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
