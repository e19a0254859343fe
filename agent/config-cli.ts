/**
 * `p2pev config check`: reads a config as `p2pev run` would and lists every problem in it.
 */
import type { Command } from 'commander';
import { loadConfig } from './core/config.js';

export function registerConfigCommands(program: Command): void {
  const config = program
    .command('config')
    .description('Write a complete, commented start configuration for a role, or check one');
  config
    .command('check')
    .description('Check a config as `p2pev run` reads it; lists every problem (exit 1 if any)')
    .option('-c, --config <file>', 'the agent config', 'agent.config.json')
    .action((opts: { config: string }) => {
      const cfg = loadConfig(opts.config);
      process.stdout.write(`${opts.config}: valid (${cfg.role} "${cfg.name}")\n`);
    });
}
