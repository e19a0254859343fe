import type { Command } from 'commander';

/** Registers `p2pev sim …`. */
export function registerSimCommands(program: Command): void {
  program.command('sim').description('Simulated meters and the paper experiment (not built yet)');
}
