/**
 * Stand-alone entry of `sim meter`, for running the simulated meter in its own process (the
 * benchmark does, so that meter and driver do not share one event loop):
 *   node --import tsx sim/meter/main.ts --profile sdm630 --port /tmp/…/slave --baud 9600
 */
import { Command } from 'commander';
import { registerSimMeterCommand } from '../meter-cli.js';

const program = new Command('sim');
registerSimMeterCommand(program);
await program.parseAsync(['node', 'sim', 'meter', ...process.argv.slice(2)]);
