// Logging: pino JSON lines on stdout (journald keeps them). Never per record.
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.MTAGENT_LOG_LEVEL ?? 'info',
      base: { service: 'mtagent' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['passphrase', '*.passphrase', 'proof', '*.proof', 'key', '*.key', 'secret', '*.secret'], censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    (options.destination ?? pino.destination({ dest: 1, sync: false })) as pino.DestinationStream,
  );
}

/** A logger that drops everything (tests, one-shot commands that print their own output). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
