/**
 * bin/commands.mjs, the table of top-level commands the entry point loads lazily: each row must
 * name a module that really registers that command with that description, and `--version` and
 * `--help` must load none of them (the start-up time of the device's CLI).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../bin/commands.mjs';

const run = promisify(execFile);
const root = new URL('..', import.meta.url).pathname;
const BIN = `${root}bin/p2pev.mjs`;
const load = (module: string) => import(/* @vite-ignore */ new URL(`../${module}.ts`, import.meta.url).href);

/** `node --import` this to have every package file the process resolves reported on stderr. */
const hooks = `${mkdtempSync(join(tmpdir(), 'p2pev-hooks-'))}/hooks.mjs`;
writeFileSync(
  hooks,
  `export async function resolve(s, c, next) {
     const r = await next(s, c);
     if (r.url.startsWith('file:') && !r.url.includes('node_modules')) process.stderr.write('LOADED ' + r.url + '\\n');
     return r;
   }`,
);
const REPORT = `data:text/javascript,import { register } from 'node:module'; register(${JSON.stringify(`file://${hooks}`)});`;

describe('the command table', () => {
  it.each(COMMANDS.map((c) => [c.name, c]))(
    '%s is registered by its module as the table says',
    async (_n, c) => {
      const mod = (await load(c.module)) as Record<string, (p: Command) => void>;
      const program = new Command('p2pev');
      mod[c.register]!(program);
      const cmd = program.commands.find((x) => x.name() === c.name);
      expect(cmd, `${c.module}.${c.register} registers no "${c.name}"`).toBeDefined();
      expect(cmd!.description()).toBe(c.description);
    },
  );

  it('lists every command the modules register (none missing from --help)', async () => {
    const names = new Set<string>();
    for (const c of COMMANDS) {
      const mod = (await load(c.module)) as Record<string, (p: Command) => void>;
      const program = new Command('p2pev');
      mod[c.register]!(program);
      for (const cmd of program.commands) names.add(cmd.name());
    }
    expect([...names].sort()).toEqual(COMMANDS.map((c) => c.name).sort());
  });

  it('--version and --help load no command module', async () => {
    const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8'));
    for (const flag of ['--version', '--help']) {
      const { stdout, stderr } = await run(process.execPath, ['--import', REPORT, BIN, flag]);
      if (flag === '--version') expect(stdout.trim()).toBe(pkg.version);
      else expect(stdout).toMatch(/Commands:[\s\S]*diag[\s\S]*sim/);
      const loaded = stderr
        .split('\n')
        .filter((l) => l.startsWith('LOADED '))
        .map((l) => l.slice(7).replace(`file://${root}`, ''));
      expect(loaded.sort()).toEqual(['bin/commands.mjs', 'bin/p2pev.mjs']);
    }
  });

  it('a command loads its own module and not sim/ (nothing below the command line imports sim/)', async () => {
    const { stderr } = await run(process.execPath, ['--import', REPORT, BIN, 'msg', '--help'], {
      env: { ...process.env, P2PEV_DIST: '0' },
    });
    const loaded = stderr.split('\n').filter((l) => l.startsWith('LOADED '));
    expect(loaded.some((l) => l.includes('/protocol/cli.ts'))).toBe(true);
    expect(loaded.filter((l) => l.includes('/sim/') || l.includes('/contracts/'))).toEqual([]);
  });

  it('usage mistakes exit 2 with what to give; other failures exit 1', async () => {
    const cases: [string[], number, RegExp][] = [
      [['bogus'], 2, /unknown command 'bogus'/],
      [
        ['msg', 'decode', '00', '--chain-id', 'x', '--contract', `0x${'1'.repeat(40)}`],
        2,
        /--chain-id x is not a decimal number/,
      ],
      [['sessions', 'export', '--config', '/nonexistent.json'], 2, /say which format/],
      [
        ['diag', 'read', '--tcp', '127.0.0.1:1', '--port', '/dev/null'],
        2,
        /give only one of --port and --tcp/,
      ],
      [['chain', 'deploy', '--rpc', 'http://127.0.0.1:1', '--key', 'secret'], 2, /--key would show the key/],
      [['config', 'check', '--config', '/nonexistent.json'], 1, /cannot read \/nonexistent\.json/],
    ];
    for (const [args, code, message] of cases) {
      const r = await run(process.execPath, [BIN, ...args], {
        env: { ...process.env, P2PEV_DIST: '0' },
      }).catch((e) => e);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stderr).not.toContain('secret');
    }
  }, 60_000);
});
