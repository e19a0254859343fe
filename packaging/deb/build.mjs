#!/usr/bin/env node
// `npm run package [-- --arch arm64] [--out DIR] [--skip-build]` (--skip-build: take the dist/ of
// `npm run build` as it is, instead of compiling into the package): the Debian package
// p2pev_<version>_<arch>.deb, built with Debian's own dpkg-deb. It holds the compiled JavaScript
// (npm run build), the production dependencies only (for --arch arm64 or armhf: their ARM
// prebuilds, `npm ci --cpu … --os linux`), the systemd unit, the udev rule, p2pev's journal
// namespace, the config skeleton (a conffile), and maintainer scripts that create the system user.
//
// Layout: /usr/lib/p2pev (the program), /usr/bin/p2pev (a wrapper naming /usr/bin/node),
// /lib/systemd/system/p2pev.service, /lib/udev/rules.d/99-p2pev-rs485.rules,
// /etc/systemd/journald@p2pev.conf and /etc/p2pev/agent.config.json (conffiles),
// /usr/share/doc/p2pev. Depends on nodejs >= 20.19 (NodeSource's 22 or 24 LTS on Bookworm).
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';

const root = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
const here = `${root}/packaging/deb`;
const install = `${root}/agent/install`;

function args(argv) {
  const o = { out: root, build: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--arch') o.arch = argv[++i];
    else if (a === '--out') o.out = argv[++i];
    else if (a === '--skip-build') o.build = false;
    else {
      process.stderr.write(
        `package: unknown option ${a}\nusage: npm run package -- [--arch amd64|arm64|armhf] [--out DIR] [--skip-build]\n`,
      );
      process.exit(2);
    }
  }
  o.arch ??= execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();
  if (!['amd64', 'arm64', 'armhf'].includes(o.arch)) {
    process.stderr.write(`package: --arch ${o.arch}: use amd64, arm64 or armhf\n`);
    process.exit(2);
  }
  return o;
}

/** What the packages ship for their own development (linters, tests, CI, web docs): not code. */
const JUNK_FILES =
  /^(\.eslintrc.*|\.npmignore|\.gitattributes|\.gitignore|\.travis\.yml|\.editorconfig|\.prettierrc.*|\.taprc|\.nycrc.*|index\.html|tsconfig\.json|.*\.d\.ts|.*\.d\.mts|.*\.d\.cts|.*\.map)$/;
const JUNK_DIRS = /^(test|tests|__tests__|\.github|\.husky|docs|example|examples|benchmarks?)$/;

/** Debian's architecture names → npm's --cpu. */
const NPM_CPU = { amd64: 'x64', arm64: 'arm64', armhf: 'arm' };

const opts = args(process.argv.slice(2));
const pkg = JSON.parse(readFileSync(`${root}/package.json`, 'utf8'));
const version = pkg.version;
const say = (m) => process.stdout.write(`package: ${m}\n`);

const stage = mkdtempSync(join(tmpdir(), 'p2pev-deb-'));
const lib = `${stage}/usr/lib/p2pev`;
try {
  mkdirSync(lib, { recursive: true });
  for (const f of ['package.json', 'package-lock.json']) cpSync(`${root}/${f}`, `${lib}/${f}`);
  cpSync(`${root}/bin`, `${lib}/bin`, { recursive: true });
  if (opts.build) {
    say('compiling into the package (.ci/build.mjs --out)');
    execFileSync(process.execPath, [`${root}/.ci/build.mjs`, '--out', `${lib}/dist`], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  } else cpSync(`${root}/dist`, `${lib}/dist`, { recursive: true });
  // The schema where the config's "$schema" and editors look for it.
  mkdirSync(`${lib}/agent`, { recursive: true });
  cpSync(`${root}/agent/config.schema.json`, `${lib}/agent/config.schema.json`);

  say(`production dependencies for linux-${NPM_CPU[opts.arch]} (npm ci --omit=dev)`);
  execFileSync(
    'npm',
    [
      'ci',
      '--omit=dev',
      '--ignore-scripts',
      '--no-audit',
      '--no-fund',
      '--cpu',
      NPM_CPU[opts.arch],
      '--os',
      'linux',
    ],
    { cwd: lib, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  // Prebuilt native bindings for other systems than this package's are dead weight.
  const keep = { amd64: /linux-x64/, arm64: /linux-arm64/, armhf: /linux-arm($|[^6])/ }[opts.arch];
  for (const pkg of ['@serialport/bindings-cpp', 'secp256k1']) {
    const prebuilds = `${lib}/node_modules/${pkg}/prebuilds`;
    for (const d of safeList(prebuilds)) if (!keep.test(d)) rmSync(`${prebuilds}/${d}`, { recursive: true });
    for (const d of safeList(prebuilds))
      for (const f of safeList(`${prebuilds}/${d}`))
        if (f.includes('.musl.')) rmSync(`${prebuilds}/${d}/${f}`);
  }
  rmSync(`${lib}/node_modules/.package-lock.json`, { force: true });
  // What the packages ship for their own development (linters, tests, CI, web docs): not code.
  prune(`${lib}/node_modules`);
  // install.sh and its files are for a checkout, not the package.
  rmSync(`${lib}/dist/agent/install`, { recursive: true, force: true });

  // /usr/bin/p2pev: the system's node, whatever PATH sudo leaves.
  mkdirSync(`${stage}/usr/bin`, { recursive: true });
  writeFileSync(
    `${stage}/usr/bin/p2pev`,
    '#!/bin/sh\nexec /usr/bin/node /usr/lib/p2pev/bin/p2pev.mjs "$@"\n',
  );
  chmodSync(`${stage}/usr/bin/p2pev`, 0o755);

  const unit = readFileSync(`${install}/p2pev.service`, 'utf8')
    .replaceAll('@NODE@', '/usr/bin/node')
    .replaceAll('/opt/p2pev', '/usr/lib/p2pev')
    .replace(
      'Documentation=file:/usr/lib/p2pev/docs/INSTALL.md',
      'Documentation=file:/usr/share/doc/p2pev/getting-started.md',
    );
  put('lib/systemd/system/p2pev.service', unit);
  put('lib/udev/rules.d/99-p2pev-rs485.rules', readFileSync(`${install}/99-p2pev-rs485.rules`));
  put('etc/systemd/journald@p2pev.conf', readFileSync(`${install}/journald@p2pev.conf`));
  put(
    'etc/p2pev/agent.config.json',
    readFileSync(`${install}/agent.config.json`, 'utf8').replace(
      '/opt/p2pev/agent/',
      '/usr/lib/p2pev/agent/',
    ),
  );
  put('usr/share/doc/p2pev/copyright', readFileSync(`${here}/copyright`));
  // Not "INSTALL…": Debian keeps that name for building from source.
  put('usr/share/doc/p2pev/getting-started.md', readFileSync(`${root}/docs/INSTALL.md`));
  const date = new Date().toUTCString().replace('GMT', '+0000');
  put(
    'usr/share/doc/p2pev/changelog.gz',
    gzipSync(
      `p2pev (${version}) unstable; urgency=medium\n\n  * Package of p2pev ${version}.\n\n -- p2pev maintainers <p2pev@invalid.example>  ${date}\n`,
      { level: 9 },
    ),
  );
  put('usr/share/lintian/overrides/p2pev', readFileSync(`${here}/lintian-overrides`));

  // Modes: directories 0755, files 0644, executables (bin, scripts, native code) 0755.
  normaliseModes(stage);

  const debian = `${stage}/DEBIAN`;
  mkdirSync(debian);
  for (const script of ['postinst', 'prerm']) {
    cpSync(`${here}/${script}`, `${debian}/${script}`);
    chmodSync(`${debian}/${script}`, 0o755);
  }
  writeFileSync(`${debian}/conffiles`, '/etc/p2pev/agent.config.json\n/etc/systemd/journald@p2pev.conf\n');
  const sizeKb = Number(
    execFileSync('du', ['-sk', '--exclude=DEBIAN', stage], { encoding: 'utf8' }).split('\t')[0],
  );
  writeFileSync(
    `${debian}/control`,
    `${[
      'Package: p2pev',
      `Version: ${version}`,
      `Architecture: ${opts.arch}`,
      'Maintainer: p2pev maintainers <p2pev@invalid.example>',
      `Installed-Size: ${sizeKb}`,
      // libc6, libstdc++6, libgcc-s1: the serial port's native binding (a prebuilt .node).
      'Depends: nodejs (>= 20.19), libc6, libstdc++6, libgcc-s1, passwd, systemd',
      'Section: net',
      'Priority: optional',
      'Homepage: https://p2pev.invalid/',
      'Description: smart-meter agent for peer-to-peer EV charging',
      ' p2pev runs beside a home charging station (or in an EV) and reads its Modbus',
      ' meter; stations and cars agree on a charge over MQTT with signed messages',
      ' and settle it on an Ethereum chain. This package holds the agent, its',
      ' systemd unit, the udev rule for USB RS-485 adapters and the system user.',
      ' .',
      ' Node.js 22 or 24 LTS is recommended (Node 20 is past its end of life);',
      ' on Debian 12 install it from NodeSource before this package.',
    ].join('\n')}\n`,
  );
  writeFileSync(`${debian}/md5sums`, md5sums(stage));

  mkdirSync(opts.out, { recursive: true });
  const deb = `${opts.out}/p2pev_${version}_${opts.arch}.deb`;
  say(`dpkg-deb --build → ${deb}`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, deb], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  say(`built ${deb}`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}

function put(path, content) {
  const file = `${stage}/${path}`;
  mkdirSync(file.slice(0, file.lastIndexOf('/')), { recursive: true });
  writeFileSync(file, content);
}

function safeList(dir) {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function* walk(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory()) {
      yield [p, 'dir'];
      yield* walk(p);
    } else if (e.isFile()) yield [p, 'file'];
  }
}

/** Directories 0755; files 0644, except scripts (a #! line) 0755. Shared objects stay 0644. */
function normaliseModes(dir) {
  chmodSync(dir, 0o755);
  for (const [p, kind] of walk(dir)) {
    if (kind === 'dir') chmodSync(p, 0o755);
    else {
      const head = readFileSync(p).subarray(0, 2);
      chmodSync(p, head[0] === 0x23 && head[1] === 0x21 ? 0o755 : 0o644);
    }
  }
}

function prune(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory()) {
      if (JUNK_DIRS.test(e.name)) rmSync(p, { recursive: true });
      else prune(p);
    } else if (JUNK_FILES.test(e.name)) rmSync(p);
  }
}

function md5sums(dir) {
  const lines = [];
  for (const [p, kind] of walk(dir)) {
    // Conffiles are checked by dpkg itself (DEBIAN/conffiles), as dh_md5sums leaves them out.
    if (kind !== 'file' || p.startsWith(`${dir}/DEBIAN/`) || p.startsWith(`${dir}/etc/`)) continue;
    if (statSync(p).size >= 0)
      lines.push(`${createHash('md5').update(readFileSync(p)).digest('hex')}  ${relative(dir, p)}`);
  }
  return `${lines.sort((a, b) => a.slice(34).localeCompare(b.slice(34))).join('\n')}\n`;
}
