/**
 * The pieces of the ops work that need no world: the clock-jump watch, OCMF signatures checked by
 * Node's OpenSSL, the strict OCMF parser refusing malformed records, Home Assistant payloads, and
 * the journal staying bounded however many sessions pass through it.
 */
import { createPublicKey, verify } from 'node:crypto';
import { appendFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { computeAddress, Wallet } from 'ethers';
import { describe, expect, it } from 'vitest';
import { ClockWatch, shiftSessionTimes } from '../agent/core/clock.js';
import { discoveryMessages } from '../agent/ops/homeassistant.js';
import { COMPACT_GROWTH, Journal } from '../agent/core/journal.js';
import { ocmfPayload, ocmfTime, publicKeyHex, publicKeySpki, signOcmf } from '../agent/ops/ocmf.js';
import type { SessionRecord } from '../agent/core/session.js';
import { OcmfInvalid, parseOcmf, verifyOcmf } from './helpers/ocmf-verifier.js';
import { tempDir } from './helpers/world.js';

describe('ClockWatch', () => {
  it('reports a step of the wall clock, not the time that passes or NTP slewing', () => {
    let wall = 1_700_000_000_000;
    let mono = 5000;
    const watch = new ClockWatch(
      () => wall,
      () => mono,
    );
    wall += 1000;
    mono += 1000;
    expect(watch.check()).toBe(0);
    wall += 1000.4; // slewing: 0.4 ms fast over a second
    mono += 1000;
    expect(watch.check()).toBe(0);
    wall += 3_600_000 + 500; // NTP step of one hour, half a second after the last tick
    mono += 500;
    expect(watch.check()).toBe(3_600_000);
    wall -= 7_200_000;
    expect(watch.check()).toBe(-7_200_000);
    expect(watch.seen.jumps).toBe(2);
  });

  it('shifts a session so its deadlines name the same instants; a signed t0 stays', () => {
    const s = {
      state: 'charging',
      deadline: 1000,
      lastProgressAt: 900,
      updatedAt: 800,
      createdAt: 700,
      t0: 100,
    };
    shiftSessionTimes(s as unknown as SessionRecord, 60_000);
    expect(s).toMatchObject({
      deadline: 61_000,
      lastProgressAt: 60_900,
      updatedAt: 60_800,
      createdAt: 60_700,
      t0: 160,
    });
    const reported = { state: 'awaitingSettlement', deadline: 0, updatedAt: 0, createdAt: 0, t0: 100 };
    shiftSessionTimes(reported as unknown as SessionRecord, 60_000);
    expect(reported).toMatchObject({ deadline: 0, t0: 100 });
  });
});

describe('OCMF', () => {
  const wallet = Wallet.createRandom();
  const session = {
    seq: '7',
    txid: `0x${'ab'.repeat(32)}`,
    ev: `0x${'11'.repeat(20)}`,
    hcs: wallet.address.toLowerCase(),
    meterSerial: 'SN|42',
    profile: 'sdm630',
    startWh: 123_456,
    endWh: 130_001,
    t0: 1_714_564_800,
    t1: 1_714_568_400,
    endStatus: 3,
    energyWh: 6545n,
  };

  it('signs DER that OpenSSL verifies with the key of the station address', () => {
    const record = signOcmf(ocmfPayload(session, { version: '0.1.0' }), wallet.privateKey);
    const pub = publicKeyHex(wallet.privateKey);
    expect(computeAddress(`0x${pub}`)).toBe(wallet.address);
    const [, payloadText, sigText] = record.split('|') as [string, string, string];
    const key = createPublicKey({
      key: `-----BEGIN PUBLIC KEY-----\n${Buffer.concat([Buffer.from('3056301006072a8648ce3d020106052b8104000a034200', 'hex'), Buffer.from(pub, 'hex')]).toString('base64')}\n-----END PUBLIC KEY-----`,
      format: 'pem',
    });
    const sd = Buffer.from(JSON.parse(sigText).SD, 'hex');
    expect(sd[0]).toBe(0x30);
    expect(verify('sha256', Buffer.from(payloadText), { key, dsaEncoding: 'der' }, sd)).toBe(true);
    const parsed = parseOcmf(record);
    expect(verifyOcmf(parsed, pub)).toBe(true);
    expect(parsed.payload.MS).toBe('SN|42'); // the pipe travels escaped inside the JSON
    expect(parsed.payload.PG).toBe('T7');
    expect(parsed.payload.RD.map((r) => r.TX)).toEqual(['B', 'L']);
    expect(parsed.payload.RD[1]!.TM).toBe('2024-05-01T13:00:00,000+0000 I');
  });

  it('exports the key as SPKI (DER hex and PEM), which an independent OCMF verifier (@road-labs/ocmf) takes', async () => {
    const record = signOcmf(ocmfPayload(session, { version: '0.1.0' }), wallet.privateKey);
    const spki = publicKeySpki(wallet.privateKey);
    // SEQUENCE { SEQUENCE { id-ecPublicKey, secp256k1 }, BIT STRING 04 ‖ x ‖ y }
    expect(spki.der).toBe(`3056301006072a8648ce3d020106052b8104000a034200${publicKeyHex(wallet.privateKey)}`);
    expect(spki.pem).toMatch(/^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END PUBLIC KEY-----\n$/);
    const { Verifier } = await import('@road-labs/ocmf');
    const { Crypto } = await import('@road-labs/ocmf-crypto-noble');
    const crypto = new Crypto();
    const verifier = new Verifier(crypto);
    const key = await crypto.decodeEcPublicKey(Buffer.from(spki.der, 'hex'), 'spki-der');
    const result = await verifier.parseAndVerify(record, key);
    expect(result.verified).toBe(true);
    expect(result.value?.payloadData).toMatchObject({ PG: 'T7', MS: 'SN|42' });
    // A changed reading fails, so the verifier really checks.
    const forged = record.replace('"RV":130001', '"RV":131001');
    expect(forged).not.toBe(record);
    expect((await verifier.parseAndVerify(forged, key)).verified).toBe(false);
    // The helper verifier takes the same SPKI key.
    expect(verifyOcmf(parseOcmf(record), spki.der)).toBe(true);
  });

  it('formats times as the specification shows them', () => {
    expect(ocmfTime(0)).toBe('1970-01-01T00:00:00,000+0000 I');
  });

  it('the strict parser refuses malformed records', () => {
    const good = signOcmf(ocmfPayload(session, { version: '0.1.0' }), wallet.privateKey);
    const [, p, s] = good.split('|') as [string, string, string];
    const edit = (f: (o: Record<string, unknown>) => void) => {
      const o = JSON.parse(p);
      f(o);
      return `OCMF|${JSON.stringify(o).replaceAll('|', '\\u007c')}|${s}`;
    };
    const bad: [string, string, RegExp][] = [
      ['header', `OCMX|${p}|${s}`, /header/],
      ['sections', `OCMF|${p}`, /3 sections/],
      ['pagination', edit((o) => (o.PG = 'T07')), /PG/],
      ['meter serial', edit((o) => delete o.MS), /MS/],
      ['time', edit((o) => ((o.RD as { TM: string }[])[0]!.TM = '2024-05-01 12:00:00')), /TM/],
      ['unit', edit((o) => ((o.RD as { RU: string }[])[0]!.RU = 'kW')), /RU/],
      ['status', edit((o) => ((o.RD as { ST: string }[])[0]!.ST = 'OK')), /ST/],
      ['extension letter', edit((o) => (o.QX = 1)), /QX/],
    ];
    for (const [what, text, msg] of bad) expect(() => parseOcmf(text), what).toThrow(msg);
    expect(() => parseOcmf(`OCMF|${p}|{"SA":"RSA-SHA1","SD":"00"}`)).toThrow(OcmfInvalid);
  });
});

describe('Home Assistant discovery', () => {
  it('an HCS has energy, power, voltage, current, session and earnings; an edge no meter sensors', () => {
    const hcs = discoveryMessages('homeassistant', {
      address: `0x${'ab'.repeat(20)}`,
      name: 'garage',
      role: 'hcs',
      version: '0.1.0',
      meter: { serial: 'unknown' },
    });
    expect(hcs.map((m) => m.topic.split('/')[3])).toEqual([
      'energy_kwh',
      'power_w',
      'voltage_v',
      'current_a',
      'session',
      'money_eth',
    ]);
    expect(JSON.stringify(hcs)).not.toContain('serial_number'); // an unknown serial is left out
    const edge = discoveryMessages('ha', {
      address: `0x${'cd'.repeat(20)}`,
      name: 'e',
      role: 'edge',
      version: '0',
    });
    expect(edge.map((m) => m.topic)).toEqual([`ha/sensor/p2pev_${'cd'.repeat(20)}/session/config`]);
  });
});

describe('the journal on an SD card', () => {
  it('stays bounded however many sessions pass through it', () => {
    const dir = tempDir('journal');
    const j = new Journal(dir, { maxBytes: 32 * 1024 });
    const record = (i: number) => ({
      id: String(i),
      state: 'done',
      myReport: 'ab'.repeat(200),
      updatedAt: i,
    });
    let largest = 0;
    for (let i = 0; i < 1500; i++) {
      j.put(`s:${i}`, record(i));
      // What Agent.prune does: only the newest finished sessions stay.
      if (i >= 50) j.delete(`s:${i - 50}`);
      largest = Math.max(largest, statSync(j.path).size);
    }
    j.compact();
    const live = statSync(j.path).size;
    j.close();
    // The file never passes the limit, or COMPACT_GROWTH times its live size if that is more (plus
    // a line, and the live size's drift of a line between that compaction and this one, times it).
    expect(largest).toBeLessThanOrEqual(Math.max(32 * 1024, COMPACT_GROWTH * (live + 1024)) + 1024);
    expect(Journal.read(dir).size).toBe(50);
  });

  it('gives back each live value as written, after compaction and after a reopen with a torn tail', () => {
    const dir = tempDir('journal-values');
    const j = new Journal(dir, { maxBytes: 4 * 1024 });
    const value = (i: number) => ({
      id: String(i),
      amountWei: 10n ** 18n + BigInt(i),
      list: [i, { x: 'é' }],
    });
    for (let i = 0; i < 100; i++) j.put(`s:${i % 20}`, value(i));
    j.put('seq', '7');
    j.delete('s:0');
    expect(j.compactions).toBeGreaterThan(0);
    const got = j.get<ReturnType<typeof value>>('s:19');
    expect(got).toEqual({ id: '99', amountWei: '1000000000000000099n', list: [99, { x: 'é' }] });
    // A copy: changing what was read changes nothing kept.
    got!.id = 'changed';
    expect(j.get<{ id: string }>('s:19')?.id).toBe('99');
    const before = j.list<{ id: string }>('s:').map(([k, v]) => [k, v.id]);
    j.close();
    appendFileSync(join(dir, 'journal.jsonl'), '{"k":"s:5","v":{"id":"torn');
    const again = new Journal(dir, { maxBytes: 4 * 1024 });
    expect(again.dropped).toBe(1);
    expect(again.list<{ id: string }>('s:').map(([k, v]) => [k, v.id])).toEqual(before);
    expect(again.get('s:0')).toBeUndefined();
    expect(again.get('seq')).toBe('7');
    again.close();
  });

  it('keeps what was put, not what the caller changed since; bigints survive writes, reads, compaction and replay', () => {
    const dir = tempDir('journal-copies');
    const j = new Journal(dir);
    const record = { id: 'a', state: 'charging', nested: { wh: 1 }, amount: 12345678901234567890n };
    j.put('s:a', record);
    // The caller goes on changing its record (the runtime does): the journal holds the written one.
    record.state = 'done';
    record.nested.wh = 2;
    const read = j.get<{ state: string; nested: { wh: number }; amount: string }>('s:a')!;
    expect(read).toEqual({ id: 'a', state: 'charging', nested: { wh: 1 }, amount: '12345678901234567890n' });
    // A read is a copy too.
    read.nested.wh = 3;
    expect(j.get<{ nested: { wh: number } }>('s:a')!.nested.wh).toBe(1);
    j.put('plain', { n: 1 });
    j.put('gone', { n: 2 });
    j.delete('gone');
    expect(j.list('s:')).toEqual([['s:a', { ...read, nested: { wh: 1 } }]]);
    j.compact();
    j.close();
    const again = new Journal(dir);
    expect(again.get('s:a')).toEqual({
      id: 'a',
      state: 'charging',
      nested: { wh: 1 },
      amount: '12345678901234567890n',
    });
    expect(again.get('plain')).toEqual({ n: 1 });
    expect(again.get('gone')).toBeUndefined();
    expect(again.size).toBe(2);
    again.close();
  });

  it('does not rewrite itself on every write when the live keys alone pass the limit', () => {
    // An edge keeps hundreds of finished bills, each with both signed reports: more than the limit.
    const dir = tempDir('journal-big');
    const j = new Journal(dir, { maxBytes: 32 * 1024 });
    const bill = (i: number, state: string) => ({ txid: String(i), state, evReport: 'ab'.repeat(300) });
    for (let i = 0; i < 100; i++) j.put(`b:${i}`, bill(i, 'settled')); // ~62 kB live
    const before = j.compactions;
    for (let i = 0; i < 200; i++) j.put(`b:${100 + (i % 10)}`, bill(100 + (i % 10), `state ${i}`));
    const during = j.compactions - before;
    j.close();
    // 200 writes of ~620 bytes (124 kB): a compaction each time the file has grown to
    // COMPACT_GROWTH times its live size (~124 kB at 3), not one per write.
    expect(during).toBeGreaterThan(0);
    expect(during).toBeLessThanOrEqual(5);
    expect(Journal.read(dir).size).toBe(110);
  });
});
