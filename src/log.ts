// Logging: pino JSON lines on stdout (journald keeps them), and outside
// systemd into rolled files in dataDir as well. Never per record.
import { fstatSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(options: { level?: string; destination?: pino.DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.MTAGENT_LOG_LEVEL ?? 'info',
      base: { service: 'mtagent' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['passphrase', '*.passphrase', 'proof', '*.proof', 'key', '*.key', 'secret', '*.secret'], censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** A logger that drops everything (tests, one-shot commands that print their own output). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * Whether stdout goes to journald: systemd says so in JOURNAL_STREAM
 * ("device:inode" of the stream), which a child whose stdout is elsewhere
 * inherits too, so the descriptor itself is compared with it.
 */
function stdoutIsTheJournal(): boolean {
  const stream = process.env.JOURNAL_STREAM;
  if (!stream) return false;
  try {
    const st = fstatSync(1);
    return stream === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

/** Where the daemon's own log files go when no journal keeps its output. */
export function logDir(dataDir: string): string {
  return join(dataDir, 'log');
}

/** The size one log file may reach before the next is begun, and how many earlier ones are kept. */
export const LOG_FILE_BYTES = '8m';
export const LOG_FILES_KEPT = 3;

/**
 * The daemon's logger. Under systemd, journald keeps stdout. Elsewhere (npm
 * start, a shell) the log also goes to `dataDir/log/mtagent.N.log`, a new
 * file at 8 MiB and three earlier ones kept, so that a support bundle has
 * it when there is no journal.
 */
export async function createDaemonLogger(dataDir: string, files: { bytes?: string; kept?: number } = {}): Promise<Logger> {
  if (stdoutIsTheJournal()) return createLogger();
  const { default: roll } = await import('pino-roll');
  mkdirSync(logDir(dataDir), { recursive: true });
  const file = await roll({
    file: join(logDir(dataDir), 'mtagent'),
    extension: '.log',
    size: files.bytes ?? LOG_FILE_BYTES,
    limit: { count: files.kept ?? LOG_FILES_KEPT },
  });
  const stdout = pino.destination({ dest: 1, sync: false });
  // Every line the logger's level lets through goes to both.
  return createLogger({ destination: pino.multistream([{ level: 'trace', stream: stdout }, { level: 'trace', stream: file }]) });
}
