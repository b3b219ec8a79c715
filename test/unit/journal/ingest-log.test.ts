import { describe, expect, it } from 'vitest';
import { IngestLog } from '../../../src/journal/ingest-log';
import { itemRecord } from '../../../src/journal/items';
import type { WrittenBatch } from '../../../src/journal/segment-log';
import { KiB, MiB, write } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();

async function openLog(dir: string, onBatch: (b: WrittenBatch) => void = () => {}): Promise<IngestLog> {
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
});
