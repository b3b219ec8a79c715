// pino-roll ships no types: what the agent uses of it.
declare module 'pino-roll' {
  import type { DestinationStream } from 'pino';

  interface PinoRollOptions {
    /** The file name without its number: `log/mtagent` gives log/mtagent.1.log, log/mtagent.2.log … */
    file: string;
    extension?: string;
    /** Roll when a file reaches this size: '8m'. */
    size?: string | number;
    /** Keep this many files besides the current one. */
    limit?: { count?: number };
  }

  export default function roll(options: PinoRollOptions): Promise<DestinationStream>;
}
