// MTAGENT_TUNING: the engine's own sizes as positive whole numbers, or a named refusal.
import { describe, expect, it } from 'vitest';
import { parseTuning } from '../../../src/app/daemon';
import { ENGINE_DEFAULTS } from '../../../src/engine/options';

describe('MTAGENT_TUNING', () => {
  it('takes every engine size, and nothing when unset', () => {
    expect(parseTuning(undefined)).toEqual({});
    const all = Object.fromEntries(Object.keys(ENGINE_DEFAULTS).map((k, i) => [k, 1024 + i]));
    expect(parseTuning(JSON.stringify(all))).toEqual(all);
  });

  it.each([
    ['{', /not valid JSON/],
    ['[1]', /must be a JSON object/],
    ['null', /must be a JSON object/],
    ['{"cycleByte": 4}', /unknown key cycleByte \(known: reserveBytes, /],
    ['{"cycleBytes": "4"}', /cycleBytes must be a positive whole number/],
    ['{"cycleBytes": -1}', /cycleBytes must be a positive whole number/],
    ['{"cycleBytes": 1.5}', /cycleBytes must be a positive whole number/],
  ])('refuses %s, naming why', (raw, why) => {
    expect(() => parseTuning(raw)).toThrow(why);
  });
});
