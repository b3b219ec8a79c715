// Stream items (docs/protocol.md: writes, tags, ticks, resync markers) as
// the engine handles them, and their records.
import { RecordFlag, RecordKind, type DecodedRecord } from './record';
import type { PendingRecord } from './segment-log';

export interface WriteItem {
  kind: 'write';
  seq: number;
  /** Source write time, µs since the epoch. */
  time: number;
  offset: number;
  data: Buffer;
  /** Part of a resync (flag bit 0 on the wire). */
  resync: boolean;
  /** CRC-32C of `data`, when it came with it and was checked: the journal then need not read the data again for its own CRC. */
  crc32c?: number;
}

export interface TagItem {
  kind: 'tag';
  seq: number;
  time: number;
  tagKind: 'app' | 'crash';
  name: string;
  group: string | null;
}

export interface TickItem {
  kind: 'tick';
  seq: number;
  time: number;
}

export interface ResyncItem {
  kind: 'resync-start' | 'resync-end';
  seq: number;
  time: number;
}

export type StreamItem = WriteItem | TagItem | TickItem | ResyncItem;

export function itemBytes(item: StreamItem): number {
  return item.kind === 'write' ? item.data.length : 0;
}

interface TagPayload {
  kind: 'app' | 'crash';
  name: string;
  group: string | null;
}

export function encodeTagPayload(item: TagItem): Buffer {
  const payload: TagPayload = { kind: item.tagKind, name: item.name, group: item.group };
  return Buffer.from(JSON.stringify(payload), 'utf8');
}

export function decodeTagPayload(bytes: Buffer): TagPayload {
  const p = JSON.parse(bytes.toString('utf8')) as Partial<TagPayload>;
  if ((p.kind !== 'app' && p.kind !== 'crash') || typeof p.name !== 'string') throw new Error('bad tag payload');
  return { kind: p.kind, name: p.name, group: typeof p.group === 'string' ? p.group : null };
}

const KIND_OF: Record<Exclude<StreamItem['kind'], 'write'>, RecordKind> = {
  tag: RecordKind.Tag,
  tick: RecordKind.Tick,
  'resync-start': RecordKind.ResyncStart,
  'resync-end': RecordKind.ResyncEnd,
};

/** A record that holds a stream item, with the item kept so the applier need not decode it back. */
export interface ItemRecord extends PendingRecord {
  item: StreamItem;
}

/** The ingest-log record for an item. */
export function itemRecord(pairId: string, item: StreamItem): ItemRecord {
  if (item.kind === 'write') {
    return {
      fields: { kind: RecordKind.Write, flags: item.resync ? RecordFlag.ResyncData : 0, pairId, seq: item.seq, time: item.time, offset: item.offset },
      payload: item.data,
      payloadCrc: item.crc32c,
      item,
    };
  }
  const fields = { kind: KIND_OF[item.kind], flags: 0, pairId, seq: item.seq, time: item.time, offset: 0 };
  return item.kind === 'tag' ? { fields, payload: encodeTagPayload(item), item } : { fields, item };
}

/** The item a Write/Tag/Tick/Resync record holds; a write's data is a view into `buffer`. */
export function recordItem(record: DecodedRecord, buffer: Buffer): StreamItem {
  const payload = buffer.subarray(record.payloadStart, record.payloadStart + record.payloadLength);
  switch (record.kind) {
    case RecordKind.Write:
      return { kind: 'write', seq: record.seq, time: record.time, offset: record.offset, data: payload, resync: (record.flags & RecordFlag.ResyncData) !== 0 };
    case RecordKind.Tag: {
      const t = decodeTagPayload(payload);
      return { kind: 'tag', seq: record.seq, time: record.time, tagKind: t.kind, name: t.name, group: t.group };
    }
    case RecordKind.Tick:
      return { kind: 'tick', seq: record.seq, time: record.time };
    case RecordKind.ResyncStart:
      return { kind: 'resync-start', seq: record.seq, time: record.time };
    case RecordKind.ResyncEnd:
      return { kind: 'resync-end', seq: record.seq, time: record.time };
    default:
      throw new Error(`record kind ${record.kind} is not a stream item`);
  }
}

export function isItemRecord(record: DecodedRecord): boolean {
  return (
    record.kind === RecordKind.Write ||
    record.kind === RecordKind.Tag ||
    record.kind === RecordKind.Tick ||
    record.kind === RecordKind.ResyncStart ||
    record.kind === RecordKind.ResyncEnd
  );
}
