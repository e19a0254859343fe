import type { Command } from 'commander';

/** Registers the agent's own subcommands: `run`, `keys`, `register`. */
export function registerAgentCommands(program: Command): void {
  program.command('run').description('Run one agent (ev, hcs or edge) from its config (not built yet)');
}
