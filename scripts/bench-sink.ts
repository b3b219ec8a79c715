// bench:ingest's baseline: a bare wss server speaking the same protocol that
// only parses records and acks them at once (no journal, no CRC check).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { WebSocketServer } from 'ws';
import { MAX_MESSAGE_BYTES, REPLICATE_PATH, WINDOW_BYTES } from '../src/protocol/constants';
import { parseRecords } from '../src/protocol/records';

const [certPath, keyPath, portArg] = process.argv.slice(2);
const https = createServer({ cert: readFileSync(certPath as string), key: readFileSync(keyPath as string) });
const wss = new WebSocketServer({ server: https, path: REPLICATE_PATH, maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false });
wss.on('connection', (ws) => {
  let nextStream = 1;
  ws.send(JSON.stringify({ type: 'challenge', protocol: 1, agentId: 'sink', nonce: '0'.repeat(64) }));
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      const last = new Map<number, number>();
      for (const r of parseRecords(data as Buffer)) last.set(r.stream, r.seq);
      for (const [stream, seq] of last) ws.send(JSON.stringify({ type: 'ack', stream, durableSeq: seq }));
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
