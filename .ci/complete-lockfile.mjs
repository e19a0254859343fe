#!/usr/bin/env node
// Adds the platform packages that npm left out of package-lock.json (npm/cli#4828: a lockfile
// written on one platform lists only that platform's optional binaries, and `npm ci` then refuses
// it as "not in sync"). The Pi needs them too: cbor-extract's and serialport's arm/arm64 builds.
// Run after `npm install` changes the lockfile: node .ci/complete-lockfile.mjs
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const path = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(path, 'utf8'));
const added = [];

/** The registry's metadata, or undefined where this registry does not carry the package. */
function view(name, version) {
  try {
    const meta = JSON.parse(
      execFileSync(
        'npm',
        ['view', `${name}@${version}`, 'version', 'dist.integrity', 'os', 'cpu', 'libc', 'license', '--json'],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
      ),
    );
    return Array.isArray(meta) ? meta.at(-1) : meta;
  } catch {
    return undefined;
  }
}

/** Platform from a package name like `@biomejs/cli-linux-arm64-musl` (no integrity: never installed here). */
function fromName(name, version) {
  const parts = name.split('/').at(-1).split('-');
  const os = parts.find((p) =>
    ['android', 'darwin', 'linux', 'win32', 'freebsd', 'openbsd', 'netbsd', 'sunos', 'aix'].includes(p),
  );
  const cpuName = parts.find((p) =>
    ['arm64', 'x64', 'arm', 'ia32', 'amd64', 'ppc64', 's390x', 'riscv64', 'loong64'].includes(p),
  );
  if (!os || !cpuName)
    throw new Error(`${name}@${version}: not in the registry, and its platform is not in its name`);
  return {
    version,
    os,
    cpu: cpuName === 'amd64' ? 'x64' : cpuName,
    ...(parts.includes('musl') ? { libc: 'musl' } : {}),
  };
}
for (let round = 0; round < 5; round++) {
  let changed = false;
  for (const [key, entry] of Object.entries(lock.packages)) {
    for (const [name, range] of Object.entries(entry.optionalDependencies ?? {})) {
      const at = `node_modules/${name}`;
      if (lock.packages[at]) continue;
      // Platform packages are published at exactly the parent's version (a pinned range).
      const version = String(range).replace(/^[\^~=]/, '');
      const m = view(name, version) ?? fromName(name, version);
      lock.packages[at] = {
        version: m.version,
        ...(m['dist.integrity'] ? { integrity: m['dist.integrity'] } : {}),
        ...(entry.dev ? { dev: true } : {}),
        optional: true,
        ...(m.license ? { license: m.license } : {}),
        ...(m.cpu ? { cpu: [m.cpu].flat() } : {}),
        ...(m.os ? { os: [m.os].flat() } : {}),
        ...(m.libc ? { libc: [m.libc].flat() } : {}),
      };
      added.push(`${name}@${m.version} (for ${key || 'root'})`);
      changed = true;
    }
  }
  if (!changed) break;
}
lock.packages = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1)),
);
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
console.log(
  added.length ? `added ${added.length} platform packages:\n  ${added.join('\n  ')}` : 'lockfile complete',
);
