import type { Command } from 'commander';

/** Registers `p2pev chain …`. */
export function registerChainCommands(program: Command): void {
  program.command('chain').description('Deploy the settlement contract and show the deployment (not built yet)');
}
