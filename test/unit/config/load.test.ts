import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load';

const base = `agentId: mt-01
tls: { cert: tls/a.crt, key: tls/a.key }
passphraseFile: passphrase
pairs:
  - { id: p1, target: datastore/p1.img, sizeBytes: 1048576 }
`;

describe('configuration', () => {
  it('fills the failback policy defaults and resolves relative paths against the file', () => {
    const c = parseConfig(base, '/etc/mtagent/agent.yaml');
    expect(c.policy).toEqual({ rpoThresholdSeconds: 900, retentionSeconds: 86400, appConsistentFrequencySeconds: 3600 });
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 9443 });
    expect(c.tls.cert).toBe('/etc/mtagent/tls/a.crt');
    expect(c.pairs[0]?.target).toBe('/etc/mtagent/datastore/p1.img');
    expect(c.retention.path).toBe('/mnt/retention');
    expect(c.dataDir).toBe('/var/lib/mtagent');
    expect(c.metrics).toEqual({ listen: '127.0.0.1:9464' });
  });

  it('names the key in one line for each kind of mistake', () => {
    const cases: Array<[string, RegExp]> = [
      [`${base}colour: blue\n`, /colour: unknown key/],
      [base.replace('agentId: mt-01', 'agentId: "bad id"'), /agentId: must match/],
      [`${base}listen: { port: 70000 }\n`, /listen\.port: /],
      [`${base}  - { id: p1, target: x }\n`, /pairs\[1\]\.id: duplicate pair id p1/],
      [`${base}configServer: { url: "http://cs" }\n`, /configServer\.url: must be an https/],
      [`${base}configServer: { url: "https://cs", fingerprint: "12" }\n`, /configServer\.fingerprint: must be a SHA-256/],
      ['agentId: [', /not valid YAML/],
      // A misspelt key is named, not the key it makes look missing.
      [base.replace('agentId: mt-01', 'agentID: mt-01'), /^config \/c\.yaml: agentID: unknown key \(did you mean agentId\?\)$/],
      [base.replace('passphraseFile:', 'passphraseFlie:'), /passphraseFlie: unknown key \(did you mean passphraseFile\?\)/],
      [`${base}policy: { retentionSecond: 60 }\n`, /policy\.retentionSecond: unknown key \(did you mean retentionSeconds\?\)/],
      [base.replace('sizeBytes: 1048576', 'size: 1048576'), /pairs\[0\]\.size: unknown key$/],
    ];
    for (const [text, re] of cases) expect(() => parseConfig(text, '/c.yaml')).toThrow(re);
  });

  it('accepts a fingerprint with colons and upper case', () => {
    const fp = Array.from({ length: 32 }, () => 'AB').join(':');
    const c = parseConfig(`${base}configServer: { url: "https://cs:443", fingerprint: "${fp}" }\n`, '/c.yaml');
    expect(c.configServer?.fingerprint).toBe('ab'.repeat(32));
  });
});
