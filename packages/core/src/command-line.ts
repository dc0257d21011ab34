/**
 * The command-line contract of pgkeep's commands (npm run token, catalog:rebuild, decrypt):
 * `--help`/`-h` prints the usage on stdout and exits 0; a wrong call (an unknown option, a
 * missing or bad value, a stray argument) prints one line saying what is wrong and the usage
 * on stderr, and exits 64, EX_USAGE of sysexits.h: never a stack trace.
 */
export const EXIT_USAGE = 64;

function isParseArgsError(error: unknown): error is Error & { code: string } {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

/** Node's messages go on to advise about `--`; the first sentence is the one a user needs. */
function firstSentence(message: string): string {
  return message.split(/\.(?:\s|$)/)[0] ?? message;
}

/** For a command's own checks, once readCommandLine has returned (help comes first). */
export function exitWithUsage(command: string, usage: string, problem: string): never {
  process.stderr.write(`${command}: ${problem}\n\n${usage}`);
  process.exit(EXIT_USAGE);
}

/**
 * `parse` reads the arguments: node:util parseArgs with `strict: true`, whose options include
 * `help: { type: 'boolean', short: 'h' }`. Returns its values, unless help was asked for or
 * parseArgs refused the call: then it exits.
 */
export function readCommandLine<T extends { help?: boolean | undefined }>(
  command: string,
  usage: string,
  parse: () => T,
): T {
  let values: T;
  try {
    values = parse();
  } catch (error) {
    if (isParseArgsError(error)) exitWithUsage(command, usage, firstSentence(error.message));
    throw error;
  }
  if (values.help) {
    process.stdout.write(usage);
    process.exit(0);
  }
  return values;
}
