import { MtagentError } from '../errors';

/** Damage inside the durable part of a log: never skipped, always named with its place. */
export class JournalCorruptError extends MtagentError {
  readonly file: string;
  readonly fileOffset: number;
  readonly reason: string;

  constructor(file: string, fileOffset: number, reason: string) {
    super('ERR_JOURNAL_CORRUPT', `journal corrupt at ${file} offset ${fileOffset}: ${reason}`);
    this.name = 'JournalCorruptError';
    this.file = file;
    this.fileOffset = fileOffset;
    this.reason = reason;
  }
}
