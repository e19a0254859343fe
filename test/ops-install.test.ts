/**
 * The install path as far as this machine allows: install.sh run as a dry run into a temporary
 * root (files written there, system commands printed), its files checked, the unit checked by
 * systemd-analyze (verify and the offline security score), the script by shellcheck, and the
 * config skeleton by the agent's own config loader.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../agent/core/config.js';
import { tempDir } from './helpers/world.js';

const INSTALL = new URL('../agent/install/', import.meta.url).pathname;
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

describe('install.sh --root (dry run into a temporary root)', () => {
  let root: string;
  let out: string;

  beforeAll(() => {
    root = tempDir('root');
    out = execFileSync('sh', [join(INSTALL, 'install.sh'), '--root', root, '--skip-npm'], {
      encoding: 'utf8',
    });
  });

  it('writes the package, config skeleton, udev rule, journald limits and unit, with safe modes', () => {
    expect(existsSync(join(root, 'opt/p2pev/bin/p2pev.mjs'))).toBe(true);
    expect(existsSync(join(root, 'opt/p2pev/agent/core/runtime.ts'))).toBe(true);
    // A wrapper naming the node: under sudo, `#!/usr/bin/env node` finds no node from nvm.
    expect(readFileSync(join(root, 'usr/local/bin/p2pev'), 'utf8')).toBe(
      `#!/bin/sh\nexec ${process.execPath} /opt/p2pev/bin/p2pev.mjs "$@"\n`,
    );
    expect(statSync(join(root, 'etc/p2pev')).mode & 0o777).toBe(0o750);
    expect(statSync(join(root, 'var/lib/p2pev')).mode & 0o777).toBe(0o700);
    expect(statSync(join(root, 'etc/p2pev/agent.config.json')).mode & 0o777).toBe(0o640);
    const unit = readFileSync(join(root, 'etc/systemd/system/p2pev.service'), 'utf8');
    expect(unit).toContain(
      `ExecStart=${process.execPath} /opt/p2pev/bin/p2pev.mjs run --config /etc/p2pev/agent.config.json`,
    );
    expect(unit).not.toContain('@NODE@');
    for (const line of [
      'Restart=on-failure',
      'WatchdogSec=60',
      'Type=notify',
      'ProtectSystem=strict',
      'NoNewPrivileges=yes',
      'User=p2pev',
      'SupplementaryGroups=dialout',
    ])
      expect(unit).toContain(line);
    // p2pev's own journal namespace: bounded and persistent, the system's journald untouched.
    expect(readFileSync(join(root, 'etc/systemd/journald@p2pev.conf'), 'utf8')).toMatch(
      /^SystemMaxUse=64M$/m,
    );
    expect(existsSync(join(root, 'etc/systemd/journald.conf.d'))).toBe(false);
    expect(out).not.toContain('restart systemd-journald');
    expect(unit).toContain('LogNamespace=p2pev');
    // time-sync.target: ordered after, never pulled in (systemd.special(7)).
    expect(unit).toMatch(/^After=.*time-sync\.target/m);
    expect(unit).not.toMatch(/^Wants=.*time-sync\.target/m);
    expect(existsSync(join(root, 'etc/udev/rules.d/99-p2pev-rs485.rules'))).toBe(true);
    // The system commands are printed, not run.
    expect(out).toContain(
      'would run: useradd --system --home-dir /var/lib/p2pev --no-create-home --shell /usr/sbin/nologin --groups dialout p2pev',
    );
    expect(out).toContain('would run: systemctl enable p2pev.service');
    expect(out).toContain('would run: systemctl enable systemd-time-wait-sync.service');
  });

  it("finds the sudo user's nvm node when sudo has reset PATH, and copies it out of /home", () => {
    const home = tempDir('home');
    const nodeDir = join(home, '.nvm/versions/node/v22.11.0/bin');
    mkdirSync(nodeDir, { recursive: true });
    copyFileSync(process.execPath, join(nodeDir, 'node'));
    mkdirSync(join(home, '.nvm/versions/node/v20.19.0/bin'), { recursive: true });
    const nvmRoot = tempDir('nvmroot');
    // sudo's PATH without node: only the tools install.sh uses, and a getent that answers for "pi".
    const bin = tempDir('bin');
    for (const tool of 'sh cp mkdir install sed chmod find sort tail cut dirname id rm cat pwd ln'.split(
      ' ',
    )) {
      const path = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
      symlinkSync(path, join(bin, tool));
    }
    writeFileSync(join(bin, 'getent'), `#!/bin/sh\necho "pi:x:1000:1000::${home}:/bin/bash"\n`, {
      mode: 0o755,
    });
    const r = spawnSync('sh', [join(INSTALL, 'install.sh'), '--root', nvmRoot, '--skip-npm'], {
      encoding: 'utf8',
      env: { PATH: bin, SUDO_USER: 'pi' },
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`copying ${nodeDir}/node to /opt/p2pev/node/bin/node`);
    expect(existsSync(join(nvmRoot, 'opt/p2pev/node/bin/node'))).toBe(true);
    const unit = readFileSync(join(nvmRoot, 'etc/systemd/system/p2pev.service'), 'utf8');
    expect(unit).toContain('ExecStart=/opt/p2pev/node/bin/node /opt/p2pev/bin/p2pev.mjs run');
  });

  it('keeps an existing config on a second run', () => {
    const cfg = join(root, 'etc/p2pev/agent.config.json');
    writeFileSync(cfg, '{"edited": true}\n');
    const again = execFileSync('sh', [join(INSTALL, 'install.sh'), '--root', root, '--skip-npm'], {
      encoding: 'utf8',
    });
    expect(again).toContain('keeping the existing');
    expect(readFileSync(cfg, 'utf8')).toBe('{"edited": true}\n');
  });

  it('refuses unknown options and a missing root with a usage line', () => {
    const bad = spawnSync('sh', [join(INSTALL, 'install.sh'), '--rot', '/tmp'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('unknown option --rot');
    const missing = spawnSync('sh', [join(INSTALL, 'install.sh'), '--root', '/nonexistent/p2pev'], {
      encoding: 'utf8',
    });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('is not a directory');
  });

  it('the config skeleton is a valid hcs config once its placeholders are kept', () => {
    const raw = JSON.parse(readFileSync(join(INSTALL, 'agent.config.json'), 'utf8'));
    const cfg = parseConfig(raw, '/etc/p2pev', 'skeleton');
    expect(cfg.role).toBe('hcs');
    expect(cfg.keystore.passwordFile).toBe('/etc/p2pev/key.password');
    expect(cfg.meter!.transport).toMatchObject({ kind: 'rtu', port: '/dev/p2pev-meter' });
    expect(cfg.control.port).toBe(8911);
  });

  it('the udev rule names the adapters /dev/p2pev-meter in group dialout', () => {
    const rules = readFileSync(join(INSTALL, '99-p2pev-rs485.rules'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('ATTRS'));
    expect(rules.length).toBeGreaterThanOrEqual(4);
    for (const r of rules)
      expect(r).toMatch(
        /^ATTRS\{idVendor\}=="[0-9a-f]{4}", ATTRS\{idProduct\}=="[0-9a-f]{4}", SYMLINK\+="p2pev-meter", GROUP="dialout", MODE="0660"$/,
      );
  });

  it.runIf(has('systemd-analyze'))('systemd-analyze verify accepts the unit (and does flag a typo)', () => {
    const unit = join(root, 'etc/systemd/system/p2pev.service');
    const ok = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    expect(`${ok.stdout}${ok.stderr}`).not.toMatch(/p2pev\.service:\d+/);
    const typo = join(root, 'typo.service');
    writeFileSync(typo, readFileSync(unit, 'utf8').replace('NoNewPrivileges=yes', 'NoNewPrivilege=yes'));
    const bad = spawnSync('systemd-analyze', ['verify', typo], { encoding: 'utf8' });
    expect(`${bad.stdout}${bad.stderr}`).toMatch(/typo\.service:\d+: Unknown key/);
    const sec = spawnSync('systemd-analyze', ['security', '--offline=true', unit], { encoding: 'utf8' });
    const score = Number(/Overall exposure level for p2pev\.service: ([\d.]+)/.exec(sec.stdout)?.[1]);
    expect(score).toBeLessThan(3); // systemd's scale: 0 (locked down) .. 10 (exposed)
  });

  it.runIf(has('shellcheck'))('shellcheck finds nothing in install.sh', () => {
    const r = spawnSync('shellcheck', ['--shell=sh', join(INSTALL, 'install.sh')], { encoding: 'utf8' });
    expect(r.stdout).toBe('');
    expect(r.status).toBe(0);
  });
});
