import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IngestLog, type IngestBatch } from '../../../src/journal/ingest-log';
import { itemRecord } from '../../../src/journal/items';

import { alignedBuffer } from '../../../src/native';
import { KiB, MiB, write } from '../../helpers/engine-fixture';
import { patch } from '../../helpers/files';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();

async function openLog(dir: string, onBatch: (b: IngestBatch) => void = () => {}): Promise<IngestLog> {
  const { log } = await IngestLog.open({ dir, segmentBytes: 4 * MiB, maxBatchBytes: 256 * KiB, onBatch }, () => {});
  return log;
}

describe('ingest log', () => {
  it('drain waits for what was appended before it, and ends while appends go on', async () => {
    const log = await openLog(tempDir());
    let seq = 0;
    let stop = false;
    const durable = new Set<number>();
    const stream = async (): Promise<void> => {
      const inFlight: Array<Promise<void>> = [];
      while (!stop) {
        const s = ++seq;
        inFlight.push(log.append([itemRecord('p', write('p', s, 0, 32 * KiB))]).then(() => void durable.add(s)));
        if (inFlight.length >= 4) await inFlight.shift();
      }
      await Promise.all(inFlight);
    };
    const streaming = stream();
    while (seq < 20) await new Promise((r) => setImmediate(r));
    const before = seq;
    // A drain that waited for the log to go idle would never end here.
    await log.drain();
    for (let s = 1; s <= before; s++) expect(durable.has(s), `seq ${s}`).toBe(true);
    expect(log.busy).toBe(true);
    stop = true;
    await streaming;
    await log.close();
  });

  it('close refuses appends made after it and ends once the earlier ones are durable', async () => {
    const batches: number[] = [];
    const log = await openLog(tempDir(), (b) => batches.push(b.records.length));
    const first = log.append([itemRecord('p', write('p', 1, 0, 4 * KiB))]);
    const closing = log.close();
    await expect(log.append([itemRecord('p', write('p', 2, 0, 4 * KiB))])).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    await first;
    await closing;
    expect(batches).toEqual([1]);
  });

  it('reuses segments a crash left after the end of the log, each once', async () => {
    // A crash just after a new segment was made leaves it with nothing valid
    // in it; the next open keeps it as a spare. Listed twice, the second use
    // of it failed (ENOENT) at a later roll, and the engine stopped.
    const dir = tempDir();
    const segment = 1 * MiB;
    const open = async (): Promise<IngestLog> =>
      (await IngestLog.open({ dir, segmentBytes: segment, maxBatchBytes: 256 * KiB, onBatch: () => {} }, () => {})).log;
    let log = await open();
    let seq = 0;
    const fill = async (bytes: number): Promise<void> => {
      for (let done = 0; done < bytes; done += 128 * KiB) await log.append([itemRecord('p', write('p', ++seq, 0, 128 * KiB))]);
    };
    await fill(512 * KiB);
    await log.close();
    for (const n of [2, 3]) writeFileSync(join(dir, `0000000${n}.log`), Buffer.alloc(segment));
    log = await open();
    await fill(4 * segment);
    await log.close();
    expect(readdirSync(dir).filter((n) => n.startsWith('spare-'))).toEqual([]);
  });

  it('with a staging source, points written records at the staged batch, not at the buffers they arrived in', async () => {
    // Held until their batch was durable, the arrival buffers outlived V8's
    // young generation: with 4 KiB writes, twice the full collections.
    const dir = tempDir();
    const batches: IngestBatch[] = [];
    const staging = { take: (bytes: number): Buffer => alignedBuffer(bytes) };
    const { log } = await IngestLog.open({ dir, segmentBytes: 4 * MiB, maxBatchBytes: 256 * KiB, onBatch: (b) => batches.push(b), stagingSource: staging }, () => {});
    const arrived = [write('p', 1, 0, 8 * KiB), write('p', 2, 8 * KiB, 4 * KiB)];
    const copies = arrived.map((it) => Buffer.from(it.kind === 'write' ? it.data : Buffer.alloc(0)));
    const records = arrived.map((it) => itemRecord('p', it));
    records.push(itemRecord('p', { kind: 'tick', seq: 3, time: 3_000_000 }));
    await log.append(records);
    await log.close();
    const written = batches.flatMap((b) => b.records.map((r) => ({ r, staging: b.staging })));
    expect(written).toHaveLength(3);
    written.slice(0, 2).forEach(({ r, staging: staged }, i) => {
      const item = r.item;
      if (item?.kind !== 'write' || r.payload === undefined || staged === null) throw new Error('a staged write was expected');
      expect(r.payload.buffer).toBe(staged.buffer);
      expect(item.data.buffer).toBe(staged.buffer);
      expect(Buffer.from(item.data).equals(copies[i] as Buffer)).toBe(true);
      // What arrived is left as it was: the caller's items are not changed.
      expect((arrived[i] as { data: Buffer }).data.equals(copies[i] as Buffer)).toBe(true);
    });
    expect(written[2]?.r.item?.kind).toBe('tick');
  });

  it('opens after a power cut tore the first batch of a fresh segment, and the next open still reads it whole', async () => {
    const dir = tempDir();
    const seqs = (d: string) => async (): Promise<number[]> => {
      const out: number[] = [];
      const { log } = await IngestLog.open({ dir: d, segmentBytes: 4 * MiB, maxBatchBytes: 4 * MiB, onBatch: () => {} }, (b) => {
        for (const r of b.records) out.push(r.seq);
      });
      await log.close();
      return out;
    };
    const written: IngestBatch[] = [];
    let log = await openLog(dir, (b) => written.push(b));
    let seq = 0;
    // Batches of 252 KiB, one item each, until one rolls into segment 2 (64 KiB left in segment 1).
    while ((written.at(-1)?.segment ?? 1) === 1) await log.append([itemRecord('p', write('p', ++seq, 0, 248 * KiB))]);
    const rolled = written.at(-1) as IngestBatch;
    expect(rolled).toMatchObject({ segment: 2, fileOffset: 0 });
    await log.close();
    patch(join(dir, '00000002.log'), 4096, Buffer.alloc(rolled.bytes - 4096));
    seq--;
    expect(await seqs(dir)()).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
    log = await openLog(dir, (b) => written.push(b));
    await log.append([itemRecord('p', write('p', ++seq, 0, 8 * KiB))]);
    expect(written.at(-1)?.segment).toBe(1);
    await log.close();
    log = await openLog(dir, (b) => written.push(b));
    await log.append([itemRecord('p', write('p', ++seq, 0, 252 * KiB))]);
    await log.close();
    expect(await seqs(dir)()).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
  });
});
