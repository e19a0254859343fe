/**
 * The `p2pev` command line. Each folder owns its own subcommands and registers them here,
 * so this file stays a table of contents.
 */
import { Command, CommanderError } from 'commander';
import { registerChainCommands } from '../contracts/cli.js';
import { registerDiagCommands } from '../drivers/cli.js';
import { registerMsgCommands } from '../protocol/cli.js';
import { registerSimCommands } from '../sim/cli.js';
import { registerAgentCommands } from './commands.js';
import { registerWebCommands } from './web/cli.js';
import { registerOpsCommands } from './ops/commands.js';

export function buildProgram(): Command {
  const program = new Command('p2pev')
    .description('Smart-meter agent for peer-to-peer EV charging (EV, HCS and edge roles)')
    .version('0.1.0')
    .enablePositionalOptions()
    .showHelpAfterError()
    .configureHelp({ sortSubcommands: true });
  registerMsgCommands(program);
  registerChainCommands(program);
  registerDiagCommands(program);
  registerSimCommands(program);
  registerAgentCommands(program);
  registerWebCommands(program);
  registerOpsCommands(program);
  return program;
}

/** Runs the CLI; a thrown Error becomes one line on stderr and exit code 1 (2 for usage). */
export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    // ethers' errors carry the whole transaction in `message`; its `shortMessage` is the one line.
    const e = err as { shortMessage?: string; message?: string };
    const line = (e?.shortMessage ?? e?.message ?? String(err)).split('\n')[0]!.slice(0, 400);
    process.stderr.write(`p2pev: ${line}\n`);
    process.exitCode = 1;
  }
}
