import { describe, expect, it } from 'vitest';
import { redactConfig } from '../../../src/support/bundle';

describe('redactConfig', () => {
  it('masks inline secrets and keeps paths', () => {
    const text = 'passphraseFile: passphrase\ntls: { cert: tls/agent.crt, key: tls/agent.key }\npassword: hunter2\n  token: "abc123"\nkey: /etc/mtagent/tls/agent.key\nsecret: null\n';
    const out = redactConfig(text);
    expect(out).toContain('password: [redacted]');
    expect(out).toContain('token: [redacted]');
    expect(out).not.toContain('hunter2');
    expect(out).not.toContain('abc123');
    expect(out).toContain('key: /etc/mtagent/tls/agent.key');
    expect(out).toContain('passphraseFile: passphrase');
    expect(out).toContain('secret: null');
  });
});
