// The command line of a script: node's parseArgs, where --help prints the
// script's header comment and a bad flag is one line and exit 2, not a stack.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

/** The `//` comment block a file opens with (tsc puts two lines of its own first), without the slashes. */
function headerOf(file: string): string {
  const lines = readFileSync(file, 'utf8').split('\n');
  const first = lines.findIndex((line) => line.startsWith('//'));
  if (first < 0 || first > 3) return '';
  const out: string[] = [];
  for (const line of lines.slice(first)) {
    if (!line.startsWith('//')) break;
    out.push(line.replace(/^\/\/ ?/, ''));
  }
  return out.join('\n');
}

/** Parses process.argv for the script `file` (its __filename). */
export function scriptArgs<T extends Options>(file: string, options: T) {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${headerOf(file)}\n`);
    process.exit(0);
  }
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    process.stderr.write(`${basename(file, '.js')}: ${(err as Error).message} (--help lists the options)\n`);
    process.exit(2);
  }
}
