import type { Command } from 'commander';

/** Registers `p2pev msg …`. */
export function registerMsgCommands(program: Command): void {
  program.command('msg').description('Encode and decode wire messages (field diagnostics of captured traffic) (not built yet)');
}
