import type { Command } from 'commander';
import { registerSimMeterCommand } from './meter-cli.js';

/** Registers `p2pev sim …`. */
export function registerSimCommands(program: Command): void {
  const sim = program
    .command('sim')
    .description(
      "Run the paper's experiment: anvil, a broker, 2 EVs, 2 HCSs and an edge as real agents; prints the sessions table",
    )
    .option(
      '--broker <url>',
      'use an external MQTT broker (e.g. mqtt://127.0.0.1:1883) instead of the embedded one',
    )
    .option('--rpc <url>', 'use an external Ethereum node instead of starting anvil')
    .option('--meters <kind>', 'simulated meters on tcp or rtu (a socat pseudo-terminal pair each)', 'tcp')
    .option('--time-scale <x>', 'simulated seconds per real second on the meters', (v) => Number(v), 300)
    .option('--dir <dir>', 'where the world lives (default: a new temporary directory)')
    .option('--json <file>', 'also write the report as JSON')
    .action(
      async (opts: {
        broker?: string;
        rpc?: string;
        meters: string;
        timeScale: number;
        dir?: string;
        json?: string;
      }) => {
        if (opts.meters !== 'tcp' && opts.meters !== 'rtu')
          throw new Error(`--meters ${opts.meters}: use tcp or rtu`);
        const { runExperiment } = await import('./experiment.js');
        const report = await runExperiment({ ...opts, meters: opts.meters });
        if (!report.totals.balanced) process.exitCode = 1;
      },
    );
  registerSimMeterCommand(sim);
}
