import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../cli/logger.ts';
import { compileConfig } from '../../config/load.ts';

/** Log lines never carry a secret in clear, wherever in the line it appears. */
describe('createLogger', () => {
  it('redacts secret-looking environment values and configured patterns from every line', async () => {
    process.env.LOGGER_TEST_TOKEN = 'tok-logger-0123456789';
    try {
      const out = new PassThrough();
      let text = '';
      out.on('data', (d: Buffer) => (text += d.toString()));
      const logger = createLogger(compileConfig({ log: { pretty: false }, tools: { redact: ['acct-\\d{6}'] } }), out);
      logger.warn({ err: new Error('upstream said tok-logger-0123456789 is expired'), nested: { note: 'acct-123456' } }, 'call failed with tok-logger-0123456789');
      await new Promise((r) => setImmediate(r));
      expect(text).toContain('[REDACTED:LOGGER_TEST_TOKEN]');
      expect(text).toContain('[REDACTED]');
      expect(text).not.toContain('tok-logger-0123456789');
      expect(text).not.toContain('acct-123456');
      expect(JSON.parse(text.trim())).toMatchObject({ level: 40, msg: 'call failed with [REDACTED:LOGGER_TEST_TOKEN]' });
    } finally {
      delete process.env.LOGGER_TEST_TOKEN;
    }
  });
});
