import type { Command } from 'commander';
import { registerSimMeterCommand } from './meter-cli.js';

/** Registers `p2pev sim …`. */
export function registerSimCommands(program: Command): void {
  const sim = program.command('sim').description('Simulated meters and the paper experiment (not built yet)');
  registerSimMeterCommand(sim);
}
