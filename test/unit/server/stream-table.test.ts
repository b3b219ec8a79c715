import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../../src/protocol/errors';
import { StreamRegistry, StreamTable, type StreamHolder, type StreamSession } from '../../../src/server/stream-table';

function holder(): StreamHolder & { ended: Array<{ st: StreamSession; err: ProtocolError }>; table?: StreamTable } {
  const h: StreamHolder & { ended: Array<{ st: StreamSession; err: ProtocolError }>; table?: StreamTable } = {
    ended: [],
    endStream(st, err) {
      h.ended.push({ st, err });
      h.table?.endForError(st);
    },
  };
  return h;
}

describe('stream table', () => {
  it('numbers the streams of a connection and finds them; an unknown stream is malformed', () => {
    const t = new StreamTable(holder(), new StreamRegistry());
    const a = t.open('p1', 1, 10, 4096, 512);
    const b = t.open('p2', 1, 0, 4096, 512);
    expect([a.id, b.id]).toEqual([1, 2]);
    expect(a).toMatchObject({ openDurableSeq: 10, durableSeq: 10, ackedSeq: 10, ended: false });
    expect(t.find(2, null)).toBe(b);
    expect(() => t.find(3, 7)).toThrow(ProtocolError);
    try {
      t.find(3, 7);
    } catch (err) {
      expect(err).toMatchObject({ code: 'malformed', stream: 3, seq: 7 });
    }
  });

  it('drops what arrives for a stream ended by an error, and ends it once', () => {
    const t = new StreamTable(holder(), new StreamRegistry());
    const a = t.open('p1', 1, 0, 4096, 512);
    a.backlog.push({ items: [], arrived: 0 });
    expect(t.endForError(a)).toBe(true);
    expect(t.endForError(a)).toBe(false);
    expect(a).toMatchObject({ ended: true, backlog: [] });
    expect(t.find(a.id, 5)).toBeNull();
    expect(t.get(a.id)).toBeUndefined();
  });

  it('hands a pair over to the connection that opens it, ending the stream it had with superseded', () => {
    const registry = new StreamRegistry();
    const first = holder();
    const t1 = new StreamTable(first, registry);
    first.table = t1;
    const t2 = new StreamTable(holder(), registry);
    const old = t1.open('p1', 1, 0, 4096, 512);
    expect(registry.get('p1')).toBe(old);
    registry.takeOver('p1');
    expect(first.ended).toHaveLength(1);
    expect(first.ended[0]?.err).toMatchObject({ code: 'superseded', stream: old.id });
    const fresh = t2.open('p1', 2, 0, 4096, 512);
    expect(registry.get('p1')).toBe(fresh);
    // The old stream going away later does not take the pair from the new one.
    t1.close(old);
    expect(registry.get('p1')).toBe(fresh);
    t2.endAll();
    expect(fresh.ended).toBe(true);
    expect(registry.get('p1')).toBeUndefined();
  });
});
