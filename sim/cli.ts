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
      "an external MQTT broker (e.g. mqtt://127.0.0.1:1883), 'mosquitto' to start Debian's, or 'embedded' (default: embedded; at scale mosquitto where installed)",
    )
    .option('--rpc <url>', 'use an external Ethereum node instead of starting anvil')
    .option('--meters <kind>', 'simulated meters on tcp or rtu (a socat pseudo-terminal pair each)', 'tcp')
    .option('--time-scale <x>', 'simulated seconds per real second on the meters', (v) => Number(v), 300)
    .option('--dir <dir>', 'where the world lives (default: a new temporary directory)')
    .option('--json <file>', 'also write the report as JSON')
    .option('--evs <n>', 'at scale: this many EVs (with --hcs and --sessions)', (v) => Number(v))
    .option('--hcs <n>', 'at scale: this many stations', (v) => Number(v))
    .option('--sessions <n>', 'at scale: this many sessions in all', (v) => Number(v))
    .option(
      '--chaos',
      'kill, cut, pause and step everything at random while cars charge (docs/AGENT.md, What each fault costs)',
    )
    .option('--seed <n>', 'with --chaos: the seed of the faults', (v) => Number(v), 1)
    .option(
      '--duration <s>',
      'with --chaos: how long to inject faults; alone: a soak run this long (RSS, heap, descriptors, journal sampled every minute, their trend printed)',
      (v) => Number(v),
    )
    .option('--sample-every <s>', 'with --duration: seconds between samples', (v) => Number(v), 60)
    .option(
      '--force-gc',
      "with --duration: a full garbage collection in each agent at each sample (after its RSS is read), so the heap's trend is what is kept",
    )
    .action(
      async (opts: {
        broker?: string;
        rpc?: string;
        meters: string;
        timeScale: number;
        dir?: string;
        json?: string;
        evs?: number;
        hcs?: number;
        sessions?: number;
        chaos?: boolean;
        seed: number;
        duration?: number;
        sampleEvery: number;
        forceGc?: boolean;
      }) => {
        if (opts.chaos || opts.duration !== undefined) {
          if (!Number.isInteger(opts.seed)) throw new Error('--seed must be a whole number');
          const durationS = opts.duration ?? 300;
          if (!(durationS > 0)) throw new Error('--duration must be a positive number of seconds');
          const { goalMet, runChaos } = await import('./chaos.js');
          const report = await runChaos({
            seed: opts.seed,
            durationS,
            // Without --chaos, --duration is a soak run: steady load, no faults, samples every minute.
            faults: opts.chaos === true,
            sampleEveryS: opts.sampleEvery,
            ...(opts.forceGc ? { forceGc: true } : {}),
            ...(opts.evs !== undefined ? { evs: opts.evs } : {}),
            ...(opts.hcs !== undefined ? { hcs: opts.hcs } : {}),
            ...(opts.sessions !== undefined ? { sessions: opts.sessions } : {}),
            ...(opts.dir ? { dir: opts.dir } : {}),
            ...(opts.json ? { json: opts.json } : {}),
          });
          if (!goalMet(report)) process.exitCode = 1;
          return;
        }
        if (opts.evs !== undefined || opts.hcs !== undefined || opts.sessions !== undefined) {
          const { runScale } = await import('./scale.js');
          const report = await runScale({
            evs: opts.evs ?? 50,
            hcs: opts.hcs ?? 10,
            sessions: opts.sessions ?? 100,
            ...(opts.broker ? { broker: opts.broker } : {}),
            ...(opts.json ? { json: opts.json } : {}),
          });
          if (report.lost > 0 || report.doubleBilled > 0) process.exitCode = 1;
          return;
        }
        if (opts.meters !== 'tcp' && opts.meters !== 'rtu')
          throw Object.assign(new Error(`--meters ${opts.meters}: use tcp or rtu`), { name: 'UsageError' });
        const { runExperiment } = await import('./experiment.js');
        const report = await runExperiment({ ...opts, meters: opts.meters });
        if (!report.totals.balanced) process.exitCode = 1;
      },
    );
  registerSimMeterCommand(sim);
}
