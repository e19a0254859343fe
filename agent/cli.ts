/**
 * The `p2pev` command line runner. bin/p2pev.mjs holds the table of commands and loads only the
 * module of the one called (start-up time); this file runs the program and turns what it throws
 * into what a person reads: usage errors exit 2, every other error 1, with every line of the
 * message (a config error lists all its problems, and journald shows them all).
 */
import { type Command, CommanderError } from 'commander';

/** The lines of an error worth printing: all of a ConfigError's, one of ethers' wordy ones. */
export function errorText(err: unknown): string {
  // ethers' errors carry the whole transaction in `message`; its `shortMessage` is the one line.
  const e = err as { shortMessage?: string; message?: string; name?: string };
  if (e?.shortMessage) return (e.shortMessage.split('\n')[0] ?? '').slice(0, 400);
  const text = e?.message ?? String(err);
  if (e?.name === 'ConfigError' || e?.name === 'UsageError') return text;
  return text
    .split('\n')
    .slice(0, 20)
    .map((l) => l.slice(0, 400))
    .join('\n');
}

/** Runs the CLI; a thrown Error becomes its message on stderr and exit code 1 (2 for usage). */
export async function main(program: Command, argv: string[]): Promise<void> {
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    process.stderr.write(`p2pev: ${errorText(err)}\n`);
    process.exitCode = (err as { name?: string })?.name === 'UsageError' ? 2 : 1;
  }
}
