/**
 * `p2pev broker config` against Debian's mosquitto, over TLS with an operator CA made here by
 * openssl: a member connects (the agent's own Bus, with its password file and the CA) and its
 * messages reach another member; a stranger, a wrong password and an anonymous client are refused;
 * a member cannot publish as another, nor read another's inbox.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus, type Incoming } from '../agent/core/bus.js';
import { createLogger } from '../agent/core/log.js';
import { createMetrics } from '../agent/core/metrics.js';
import { mosquittoHash, parseMembers, writeBrokerConfig } from '../agent/ops/broker.js';
import { addressOf } from '../protocol/index.js';
import { type MosquittoBroker, startMosquitto } from '../sim/broker.js';
import { freePort } from '../sim/chain.js';
import { tempDir, waitFor } from './helpers/world.js';

const domain = { chainId: 31337n, verifyingContract: `0x${'22'.repeat(20)}` };

function makeCa(dir: string) {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=p2pev test CA',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  );
  ssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
  );
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    'san.ext',
    '-out',
    'server.crt',
  );
  return { ca: join(dir, 'ca.crt'), cert: join(dir, 'server.crt'), key: join(dir, 'server.key') };
}

describe('p2pev broker config on mosquitto', () => {
  let broker: MosquittoBroker;
  let out: string;
  let port: number;
  let ca: string;
  const keys = { a: `0x${randomBytes(32).toString('hex')}`, b: `0x${randomBytes(32).toString('hex')}` };
  const a = addressOf(keys.a);
  const b = addressOf(keys.b);
  const buses: Bus[] = [];

  beforeAll(async () => {
    const dir = tempDir('broker');
    const tls = makeCa(dir);
    ca = tls.ca;
    out = join(dir, 'broker');
    port = await freePort();
    const members = parseMembers(
      [
        { address: a.toUpperCase().replace('0X', '0x'), role: 'hcs', name: 'A' },
        { address: b, role: 'ev' },
      ],
      'members.json',
    );
    const result = writeBrokerConfig({
      members,
      out,
      port,
      host: '127.0.0.1',
      caFile: tls.ca,
      certFile: tls.cert,
      keyFile: tls.key,
    });
    expect(result.newPasswords).toEqual([a, b]);
    // Run as root here; mosquitto would drop to its own user and not read the operator's files.
    const conf = `${readFileSync(result.conf, 'utf8')}user root\n`;
    broker = await startMosquitto({ port, dir: out, config: () => conf });
  }, 60_000);

  afterAll(async () => {
    for (const bus of buses) await bus.close();
    await broker?.close();
  });

  const password = (addr: string) => readFileSync(join(out, 'passwords', addr), 'utf8').trim();
  const url = () => `mqtts://127.0.0.1:${port}`;
  const connect = (username?: string, pass?: string) =>
    mqtt.connectAsync(url(), {
      ca: readFileSync(ca),
      ...(username ? { username } : {}),
      ...(pass ? { password: pass } : {}),
      reconnectPeriod: 0,
      connectTimeout: 5000,
    });

  it('writes private password files and hashes mosquitto_passwd would', () => {
    expect(statSync(join(out, 'passwd')).mode & 0o777).toBe(0o600);
    expect(statSync(join(out, 'passwords', a)).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(out, 'passwd'), 'utf8')).toMatch(new RegExp(`^${a}:\\$7\\$1000\\$`, 'm'));
    // A second run keeps every member's password.
    const before = password(a);
    const again = writeBrokerConfig({ members: [{ address: a, role: 'hcs' }], out });
    expect(again.newPasswords).toEqual([]);
    expect(password(a)).toBe(before);
    // The same hash as mosquitto_passwd -U computes for the same password (checked by mosquitto itself below).
    expect(mosquittoHash('x', 101, Buffer.alloc(12))).toMatch(
      /^\$7\$101\$AAAAAAAAAAAAAAAA\$[A-Za-z0-9+/]{86}==$/,
    );
  });

  it('p2pev broker config writes the files and prints no password', () => {
    const dir = tempDir('broker-cli');
    const members = join(dir, 'members.json');
    writeFileSync(members, JSON.stringify([{ address: a, role: 'edge' }]));
    const bin = join(import.meta.dirname, '..', 'bin', 'p2pev.mjs');
    const out = execFileSync(
      process.execPath,
      [bin, 'broker', 'config', '--members', members, '--out', join(dir, 'b')],
      {
        encoding: 'utf8',
      },
    );
    expect(out).toMatch(/mosquitto\.conf/);
    const pass = readFileSync(join(dir, 'b', 'passwords', a), 'utf8').trim();
    expect(out).not.toContain(pass);
    expect(readFileSync(join(dir, 'b', 'acl'), 'utf8')).toContain('pattern write p2pev/v1/to/+/from/%u');
  });

  it('refuses bad member lists with what to fix', () => {
    expect(() => parseMembers([{ address: '0x12', role: 'ev' }], 'm.json')).toThrow(/m.json\[0\].address/);
    expect(() => parseMembers([{ address: a, role: 'car' }], 'm.json')).toThrow(/role/);
    expect(() =>
      parseMembers(
        [
          { address: a, role: 'ev' },
          { address: a, role: 'ev' },
        ],
        'm.json',
      ),
    ).toThrow(/twice/);
  });

  it('a member connects with its password file over TLS and its messages arrive', async () => {
    const received: Incoming[] = [];
    const busOf = (key: string) => {
      const address = addressOf(key);
      const file = join(out, 'passwords', address);
      const bus = new Bus({
        mqtt: {
          url: url(),
          username: address,
          passwordFile: file,
          caFile: ca,
          topicPrefix: 'p2pev/v1',
          keepaliveS: 30,
        },
        address,
        privateKey: key,
        domain,
        isMember: async (x) => x === a || x === b,
        log: createLogger({ level: 'silent' }),
        metrics: createMetrics(false),
      });
      buses.push(bus);
      return bus;
    };
    const busA = busOf(keys.a);
    const busB = busOf(keys.b);
    busA.onMessage((m) => {
      received.push(m);
    });
    await busA.connect();
    await busB.connect();
    await busB.send(a, {
      type: 'request',
      status: 0,
      sender: b,
      receiver: a,
      optional: { n: 'hello', t: Math.floor(Date.now() / 1000) },
    });
    const got = await waitFor('the member’s request at A', () => received[0]);
    expect(got.signer).toBe(b);
  });

  it('a stranger, a wrong password and an anonymous client are refused', async () => {
    const stranger = addressOf(`0x${randomBytes(32).toString('hex')}`);
    await expect(connect(stranger, 'guess')).rejects.toThrow(/Not authorized|Bad User Name or Password/i);
    await expect(connect(a, 'wrong')).rejects.toThrow(/Not authorized|Bad User Name or Password/i);
    await expect(connect()).rejects.toThrow(/Not authorized|Bad User Name or Password/i);
  });

  it('a member cannot publish as another, nor read another’s inbox', async () => {
    const reader = await connect(a, password(a));
    const seen: string[] = [];
    reader.on('message', (topic, payload) => seen.push(`${topic} ${payload}`));
    await reader.subscribeAsync(`p2pev/v1/to/${a}/#`, { qos: 1 });
    const spoofer = await connect(b, password(b));
    // B under A's name (to A's own inbox, and "from A"), then B as itself: only the second arrives.
    await spoofer.publishAsync(`p2pev/v1/to/${a}/from/${a}`, 'forged', { qos: 1 });
    await spoofer.publishAsync(`p2pev/v1/to/${a}`, 'no sender', { qos: 1 });
    await spoofer.publishAsync(`p2pev/v1/to/${a}/from/${b}`, 'honest', { qos: 1 });
    await waitFor('the honest message', () => seen.some((s) => s.endsWith('honest')));
    expect(seen).toEqual([`p2pev/v1/to/${a}/from/${b} honest`]);
    // B may subscribe to A's inbox, but mosquitto delivers it nothing of it (the read ACL).
    const overheard: string[] = [];
    spoofer.on('message', (topic) => overheard.push(topic));
    await spoofer.subscribeAsync(`p2pev/v1/to/${a}/#`, { qos: 1 });
    await spoofer.publishAsync(`p2pev/v1/to/${a}/from/${b}`, 'second', { qos: 1 });
    await waitFor('the second message at A', () => seen.some((s) => s.endsWith('second')));
    // B's own inbox, which it may read, as the marker that its deliveries are flushed.
    await spoofer.subscribeAsync(`p2pev/v1/to/${b}/#`, { qos: 1 });
    await spoofer.publishAsync(`p2pev/v1/to/${b}/from/${b}`, 'mine', { qos: 1 });
    await waitFor('B’s own message', () => overheard.some((t) => t.startsWith(`p2pev/v1/to/${b}`)));
    expect(overheard).toEqual([`p2pev/v1/to/${b}/from/${b}`]);
    await reader.endAsync();
    await spoofer.endAsync();
  });
});
