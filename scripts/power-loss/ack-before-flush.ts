// The mutant of the power-loss test, loaded into the daemon with --require:
// every log batch is written without its flush, so the agent acknowledges
// items a power cut can still take away. The test must catch it.
import { BlockFile } from '../../src/native/block-file';

BlockFile.prototype.writeDurable = function writeWithoutFlush(this: BlockFile, buffer: Buffer, offset: number): Promise<number> {
  return this.write(buffer, offset);
};
