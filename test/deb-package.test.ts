/**
 * The Debian package (`npm run package`): built with dpkg-deb, checked by lintian, installed by
 * dpkg into a throwaway root (--root, maintainer scripts run with DPKG_ROOT, as dpkg's
 * --force-script-chrootless does), and the installed CLI run from there: compiled code, no
 * development dependencies, in a terminal.
 *
 * What this proves: the package's contents and modes, that lintian finds no error or warning, that
 * dpkg installs and removes it, that postinst creates the user p2pev (in dialout) with the right
 * owners and modes and enables the unit, and that the installed tree runs without tsx or
 * pino-pretty. What it cannot here: the unit under a running systemd (no PID 1 systemd), udev
 * triggers, and apt resolving `nodejs (>= 20.19)` from NodeSource on a real Bookworm.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers/world.js';

const root = new URL('..', import.meta.url).pathname;
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const version = JSON.parse(readFileSync(`${root}package.json`, 'utf8')).version as string;
const arch = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();

/** A root with just what dpkg and useradd need: an empty dpkg database, passwd and group files. */
function throwawayRoot(): string {
  const r = tempDir('debroot');
  for (const d of ['var/lib/dpkg/info', 'var/lib/dpkg/updates', 'etc', 'usr/sbin'])
    mkdirSync(join(r, d), { recursive: true });
  writeFileSync(join(r, 'var/lib/dpkg/status'), '');
  writeFileSync(join(r, 'var/lib/dpkg/available'), '');
  writeFileSync(join(r, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(r, 'etc/group'), 'root:x:0:\ndialout:x:20:\n');
  writeFileSync(join(r, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n', { mode: 0o640 });
  writeFileSync(join(r, 'etc/gshadow'), 'root:*::\ndialout:*::\n', { mode: 0o640 });
  return r;
}

const dpkg = (r: string, ...args: string[]) =>
  spawnSync(
    'dpkg',
    [
      `--root=${r}`,
      '--force-script-chrootless',
      '--force-depends',
      '--force-not-root',
      '--log=/dev/null',
      ...args,
    ],
    { encoding: 'utf8' },
  );

describe('the Debian package', () => {
  let deb: string;
  let r: string;

  beforeAll(() => {
    const out = tempDir('deb');
    execFileSync(process.execPath, [`${root}packaging/deb/build.mjs`, '--out', out], { stdio: 'pipe' });
    deb = join(out, `p2pev_${version}_${arch}.deb`);
    r = throwawayRoot();
  }, 600_000);

  it('is named p2pev_<version>_<arch>.deb and says what it is and needs', () => {
    expect(existsSync(deb)).toBe(true);
    const fields = execFileSync('dpkg-deb', ['--field', deb], { encoding: 'utf8' });
    expect(fields).toMatch(/^Package: p2pev$/m);
    expect(fields).toMatch(new RegExp(`^Version: ${version}$`, 'm'));
    expect(fields).toMatch(new RegExp(`^Architecture: ${arch}$`, 'm'));
    expect(fields).toMatch(/^Depends: nodejs \(>= 20\.19\), libc6/m);
    const files = execFileSync('dpkg-deb', ['--contents', deb], { encoding: 'utf8' });
    for (const f of [
      './usr/bin/p2pev',
      './usr/lib/p2pev/bin/p2pev.mjs',
      './usr/lib/p2pev/dist/agent/cli.js',
      './usr/lib/p2pev/dist/agent/config.schema.json',
      './lib/systemd/system/p2pev.service',
      './lib/udev/rules.d/99-p2pev-rs485.rules',
      './etc/systemd/journald@p2pev.conf',
      './etc/p2pev/agent.config.json',
    ])
      expect(files).toContain(f);
    // Production dependencies only: no TypeScript sources, no tsx, no pino-pretty, no test tools.
    for (const absent of [
      'node_modules/tsx/',
      'node_modules/pino-pretty/',
      'node_modules/vitest/',
      'agent/core/runtime.ts',
    ])
      expect(files).not.toContain(absent);
    expect(files).toContain('./usr/lib/p2pev/node_modules/ethers/');
    expect(execFileSync('dpkg-deb', ['--info', deb, 'conffiles'], { encoding: 'utf8' })).toBe(
      '/etc/p2pev/agent.config.json\n/etc/systemd/journald@p2pev.conf\n',
    );
  });

  it.runIf(has('lintian'))(
    'lintian finds no error and no warning',
    () => {
      const l = spawnSync('lintian', ['--fail-on', 'error,warning', '--tag-display-limit', '0', deb], {
        encoding: 'utf8',
      });
      expect(l.stdout).toBe('');
      expect(l.status).toBe(0);
    },
    120_000,
  );

  it('dpkg installs it into a throwaway root; postinst makes the user, the owners and modes, and enables the unit', () => {
    const install = dpkg(r, '-i', deb);
    expect(install.stderr).not.toMatch(/error/i);
    expect(install.status).toBe(0);
    expect(install.stdout).toContain('p2pev: installed and enabled, not started');
    const status = dpkg(r, '-s', 'p2pev');
    expect(status.stdout).toMatch(/^Status: install ok installed$/m);

    const passwd = readFileSync(join(r, 'etc/passwd'), 'utf8');
    const user = /^p2pev:x:(\d+):(\d+)::\/var\/lib\/p2pev:\/usr\/sbin\/nologin$/m.exec(passwd);
    expect(user, passwd).not.toBeNull();
    const [uid, gid] = [Number(user![1]), Number(user![2])];
    expect(readFileSync(join(r, 'etc/group'), 'utf8')).toMatch(/^dialout:x:20:p2pev$/m);

    const mode = (p: string) => statSync(join(r, p));
    expect(mode('etc/p2pev').mode & 0o777).toBe(0o750);
    expect([mode('etc/p2pev').uid, mode('etc/p2pev').gid]).toEqual([0, gid]);
    expect(mode('etc/p2pev/agent.config.json').mode & 0o777).toBe(0o640);
    expect(mode('var/lib/p2pev').mode & 0o777).toBe(0o700);
    expect([mode('var/lib/p2pev').uid, mode('var/lib/p2pev').gid]).toEqual([uid, gid]);
    expect(mode('usr/bin/p2pev').mode & 0o777).toBe(0o755);
    expect(readlinkSync(join(r, 'etc/systemd/system/multi-user.target.wants/p2pev.service'))).toBe(
      '/lib/systemd/system/p2pev.service',
    );
    const unit = readFileSync(join(r, 'lib/systemd/system/p2pev.service'), 'utf8');
    expect(unit).toContain(
      'ExecStart=/usr/bin/node /usr/lib/p2pev/bin/p2pev.mjs run --config /etc/p2pev/agent.config.json',
    );
    expect(readFileSync(join(r, 'usr/bin/p2pev'), 'utf8')).toBe(
      '#!/bin/sh\nexec /usr/bin/node /usr/lib/p2pev/bin/p2pev.mjs "$@"\n',
    );
    if (has('systemd-analyze')) {
      const v = spawnSync('systemd-analyze', ['verify', join(r, 'lib/systemd/system/p2pev.service')], {
        encoding: 'utf8',
      });
      expect(`${v.stdout}${v.stderr}`).not.toMatch(/p2pev\.service:\d+/);
    }
  });

  it('the installed CLI runs the compiled code without development dependencies, in a terminal too', () => {
    const bin = join(r, 'usr/lib/p2pev/bin/p2pev.mjs');
    const env = { ...process.env, P2PEV_DIST: '', P2PEV_KEY_PASSWORD: 'throwaway' };
    expect(execFileSync(process.execPath, [bin, '--version'], { encoding: 'utf8' }).trim()).toBe(version);
    // The skeleton config is valid as shipped (its "$schema" names the installed schema).
    const skeleton = join(r, 'etc/p2pev/agent.config.json');
    expect(JSON.parse(readFileSync(skeleton, 'utf8')).$schema).toBe(
      '/usr/lib/p2pev/agent/config.schema.json',
    );
    expect(existsSync(join(r, 'usr/lib/p2pev/agent/config.schema.json'))).toBe(true);
    expect(
      execFileSync(process.execPath, [bin, 'config', 'check', '--config', skeleton], { encoding: 'utf8' }),
    ).toMatch(/valid \(hcs/);

    // `p2pev run` in a terminal (script(1) gives it one): JSON log lines, no pino-pretty needed.
    const dir = tempDir('debrun');
    execFileSync(
      process.execPath,
      [bin, 'keys', 'new', '--keystore', join(dir, 'key.json'), '--scrypt-n', '1024'],
      {
        env,
      },
    );
    const config = join(dir, 'edge.json');
    writeFileSync(
      config,
      JSON.stringify({
        role: 'edge',
        dataDir: join(dir, 'data'),
        keystore: { path: join(dir, 'key.json') },
        chain: { rpcUrl: 'http://127.0.0.1:9', deploymentFile: join(dir, 'deployment.json') },
        mqtt: { url: 'mqtt://127.0.0.1:9' },
      }),
    );
    const tty = spawnSync(
      'timeout',
      [
        '-s',
        'INT',
        '15',
        'script',
        '-qfec',
        `${process.execPath} ${bin} run --config ${config}`,
        '/dev/null',
      ],
      { encoding: 'utf8', env },
    );
    const out = tty.stdout.replace(/\r/g, '');
    expect(out).not.toContain('pino-pretty');
    expect(out).not.toContain('unable to determine transport target');
    expect(out).toMatch(/\{"level":30,.*"msg":"agent starting"\}/);
  }, 60_000);

  it('dpkg removes it again, keeping the config (a conffile) and the journal', () => {
    const rm = dpkg(r, '-r', 'p2pev');
    expect(rm.status, rm.stderr).toBe(0);
    expect(existsSync(join(r, 'usr/lib/p2pev/bin/p2pev.mjs'))).toBe(false);
    expect(existsSync(join(r, 'etc/systemd/system/multi-user.target.wants/p2pev.service'))).toBe(false);
    expect(existsSync(join(r, 'etc/p2pev/agent.config.json'))).toBe(true);
    expect(existsSync(join(r, 'var/lib/p2pev'))).toBe(true);
  });
});
