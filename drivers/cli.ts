import type { Command } from 'commander';

/** Registers `p2pev diag …`. */
export function registerDiagCommands(program: Command): void {
  program
    .command('diag')
    .description('Field diagnostics of Modbus meters over serial or TCP (not built yet)');
}
