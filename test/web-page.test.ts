/**
 * The members' page in a real browser (Debian's headless Chromium through playwright-core),
 * served by a running edge agent on its control port, against a sim world: real agents, real
 * MQTT, real anvil, simulated meters. The page must find the run's sessions with each side's
 * energy and the amounts the contract moved, statements that balance against the contract's own
 * view, the ratings' means, the ranking an EV would get, and let the EV sign a rating in its
 * wallet (an EIP-6963 provider backed by anvil's unlocked account). Screenshots go to a
 * temporary directory, or to docs/screenshots/ with P2PEV_SCREENSHOTS=docs (to refresh the docs'
 * pictures without every test run rewriting tracked files).
 */
import { withinTolerance } from '../agent/roles/settle.js';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatEther, parseEther } from 'ethers';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/core/runtime.js';
import type { SessionRecord } from '../agent/core/session.js';
import { billWei, reportEnergyWh } from '../protocol/index.js';
import type { World } from '../sim/world.js';
import { device, PRICE, smallWorld, startAgent, waitFor, sessionDone } from './helpers/world.js';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS =
  process.env.P2PEV_SCREENSHOTS === 'docs'
    ? new URL('../docs/screenshots/', import.meta.url)
    : pathToFileURL(`${mkdtempSync(join(tmpdir(), 'p2pev-shots-'))}/`);
const HCS2_PRICE = PRICE * 2n;

interface Run {
  txid: string;
  ev: string;
  hcs: string;
  evWh: bigint;
  hcsWh: bigint;
  price: bigint;
}

/** One charge from the EV's control call to both sides done; what each side signed. */
async function charge(
  agents: Agent[],
  ev: Agent,
  body: Record<string, unknown>,
  onCharging?: () => Promise<void>,
): Promise<Run> {
  const { id } = (await ev.control('charge', body)) as { id: string };
  if (onCharging) {
    await waitFor('EV charging', () => ev.sessions.get(id)?.state === 'charging', 30_000);
    await onCharging();
  }
  const done = await sessionDone(ev, id, 45_000);
  const hcs = agents.find((a) => a.address === done.hcs)!;
  const hcsSession = await waitFor('HCS report', () =>
    [...hcs.sessions.values()].find((s: SessionRecord) => s.txid === done.txid && s.myReport),
  );
  return {
    txid: done.txid!,
    ev: ev.address,
    hcs: hcs.address,
    evWh: reportEnergyWh(done.myReport!),
    hcsWh: reportEnergyWh(hcsSession.myReport!),
    price: BigInt(done.terms!.price),
  };
}

/** The contract's rule: the station's meter inside the tolerance, else the smaller figure. */
const billedOf = (r: Run): bigint =>
  withinTolerance(r.evWh, r.hcsWh, 50n, 200n) ? r.hcsWh : r.evWh < r.hcsWh ? r.evWh : r.hcsWh;

/** A figure the page shows in ETH ("0.0006", "9.9994 ETH") as wei. */
const wei = (text: string) => parseEther(text.replace(/ETH|\s/g, '').replace('−', '-'));
const kwh = (wh: bigint) => `${(Number(wh) / 1000).toFixed(3)} kWh`;

/** An EIP-6963 wallet whose requests the test answers from Node: the EV's account on anvil. */
async function injectWallet(page: Page, account: string, rpcUrl: string): Promise<void> {
  await page.exposeFunction('__testWalletRpc', async (method: string, params: unknown[]) => {
    if (method === 'eth_requestAccounts' || method === 'eth_accounts') return [account];
    const res = await fetch(rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    });
    const body = (await res.json()) as { result?: unknown; error?: { message: string } };
    if (body.error) throw new Error(body.error.message);
    return body.result;
  });
  await page.addInitScript(() => {
    const w = window as unknown as {
      __testWalletRpc: (m: string, p: unknown[]) => Promise<unknown>;
    };
    const provider = {
      request: ({ method, params }: { method: string; params?: unknown[] }) =>
        w.__testWalletRpc(method, params ?? []),
    };
    const announce = () =>
      window.dispatchEvent(
        new CustomEvent('eip6963:announceProvider', {
          detail: Object.freeze({
            info: { uuid: 'test-wallet', name: 'Test wallet', icon: '', rdns: 'test' },
            provider,
          }),
        }),
      );
    window.addEventListener('eip6963:requestProvider', announce);
  });
}

describe.skipIf(!existsSync(CHROMIUM))("the members' page in headless Chromium", () => {
  let world: World;
  const agents: Agent[] = [];
  let browser: Browser;
  let page: Page;
  let base: string;
  const runs: Run[] = [];
  let liveEnergyText = '';

  beforeAll(async () => {
    world = await smallWorld({
      edge: true,
      stations: [
        {
          name: 'HCS1',
          latitude: 52.52,
          longitude: 13.405,
          priceWeiPerKWh: PRICE,
          powerKw: 11,
          profile: 'sdm630',
        },
        {
          name: 'HCS2',
          latitude: 52.5,
          longitude: 13.45,
          priceWeiPerKWh: HCS2_PRICE,
          powerKw: 22,
          profile: 'sdm630',
        },
      ],
      evs: [
        { name: 'EV1', latitude: 52.521, longitude: 13.41, profile: 'sdm120' },
        { name: 'EV2', latitude: 52.501, longitude: 13.449, profile: 'sdm120' },
      ],
    });
    for (const d of world.devices) agents.push(await startAgent(d));
    const [ev1, ev2] = ['EV1', 'EV2'].map((n) => agents.find((a) => a.cfg.name === n)!);
    // Two cars at once, each at its nearest station, then EV1 once more without a rating: the
    // page's wallet rates that one.
    runs.push(
      ...(await Promise.all([
        charge(agents, ev1!, { targetWh: 2000, rating: 4, comment: 'quick' }),
        charge(agents, ev2!, { targetWh: 1500, rating: 2, comment: 'slow' }),
      ])),
    );
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    // The EV's own agent serves the page too: its live state while it charges.
    const evPage = await browser.newPage({ viewport: { width: 1000, height: 640 } });
    runs.push(
      await charge(agents, ev1!, { targetWh: 4000 }, async () => {
        await evPage.goto(`http://127.0.0.1:${ev1!.controlPort}/#device`);
        const live = evPage.locator('#devices article', { hasText: 'charging' });
        await live.waitFor({ timeout: 10_000 });
        liveEnergyText = (await live.textContent()) ?? '';
        await evPage.screenshot({ path: new URL('web-device.png', SHOTS).pathname });
      }),
    );
    await evPage.close();
    const edge = agents.find((a) => a.cfg.role === 'edge')!;
    base = `http://127.0.0.1:${edge.controlPort}/`;
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await injectWallet(page, ev1!.address, world.rpcUrl);
  }, 150_000);

  afterAll(async () => {
    await browser?.close();
    for (const a of agents) await a.stop();
    await world?.close();
  });

  it("shows the charging EV's live meter and session on its own agent's page", () => {
    expect(liveEnergyText).toMatch(/EV1/);
    expect(liveEnergyText).toMatch(/charging with 0x/);
    expect(liveEnergyText).toMatch(/Meter energy\d+\.\d{3} kWh/);
    expect(liveEnergyText).toMatch(/Meter power\d+\.\d{2} kW/);
  });

  it('lists every session of the run with each side’s energy, the billed energy and the amount', async () => {
    mkdirSync(SHOTS, { recursive: true });
    await page.goto(`${base}#sessions`);
    const rows = page.locator('#sessions-table tbody tr');
    await expect.poll(() => rows.count(), { timeout: 15_000 }).toBe(runs.length);
    for (const r of runs) {
      const cells = await page.locator(`tr[data-txid="${r.txid}"] td`).allTextContents();
      const billed = billedOf(r);
      expect(cells[3]).toBe(`${r.ev.slice(0, 6)}…${r.ev.slice(-4)}`);
      expect(cells[5]).toBe(kwh(r.evWh));
      expect(cells[6]).toBe(kwh(r.hcsWh));
      expect(cells[7]).toBe(kwh(billed));
      expect(wei(cells[8]!)).toBe(billWei(billed, r.price));
      expect(cells[9]).toBe('settled');
    }
    // The amounts are what the contract moved: the stations' earnings, wei for wei.
    for (const hcs of new Set(runs.map((r) => r.hcs))) {
      const paid = runs.filter((r) => r.hcs === hcs).reduce((t, r) => t + billWei(billedOf(r), r.price), 0n);
      expect(await world.operator.earningsOf(hcs)).toBe(paid);
    }
    await expect.poll(() => page.locator('#sessions-summary').textContent()).toMatch(/^3 sessions/);
    await page.screenshot({ path: new URL('web-sessions.png', SHOTS).pathname });
  });

  it('filters by member and pages', async () => {
    const hcs2 = device(world, 'HCS2').address;
    await page.goto(`${base}#sessions`);
    await page.getByLabel('Member (EV or station)').fill(hcs2);
    await page.getByLabel('Member (EV or station)').press('Enter');
    await expect.poll(() => page.locator('#sessions-table tbody tr').count()).toBe(1);
    expect(await page.locator('#sessions-table tbody tr td').nth(4).textContent()).toBe(
      `${hcs2.slice(0, 6)}…${hcs2.slice(-4)}`,
    );
    await page.goto(`${base}#sessions?pageSize=2`);
    await expect.poll(() => page.locator('#page-of').textContent()).toBe('Page 1 of 2');
    expect(await page.locator('#sessions-table tbody tr').count()).toBe(2);
    await page.getByRole('button', { name: 'Next page' }).click();
    await expect.poll(() => page.locator('#page-of').textContent()).toBe('Page 2 of 2');
    expect(await page.locator('#sessions-table tbody tr').count()).toBe(1);
    expect(await page.getByRole('button', { name: 'Next page' }).isDisabled()).toBe(true);
  });

  it("lets the EV sign its rating in its wallet, and the stations show the contract's means", async () => {
    const unrated = runs[2]!;
    await page.goto(`${base}#sessions?member=${unrated.ev}`);
    await page.getByRole('button', { name: 'Connect wallet' }).click();
    await expect.poll(() => page.locator('#account').textContent()).toMatch(/Connected: 0x/);
    await page.locator(`tr[data-txid="${unrated.txid}"]`).getByRole('button', { name: 'Rate' }).click();
    const dialog = page.getByRole('dialog', { name: 'Rate this session' });
    await dialog.getByLabel('5').check();
    await dialog.getByLabel('Comment (at most 10 bytes)').fill('great');
    await dialog.getByRole('button', { name: 'Sign with my wallet' }).click();
    await expect
      .poll(() => dialog.getByRole('status').textContent(), { timeout: 10_000 })
      .toMatch(/^Sent: 0x/);
    await expect
      .poll(() => page.locator(`tr[data-txid="${unrated.txid}"] td.rating`).textContent(), {
        timeout: 15_000,
      })
      .toMatch(/^★★★★★ great/);
    await dialog.waitFor({ state: 'hidden' });
    expect(await world.operator.ratingCount(unrated.hcs)).toBe(2);

    // Keyboard: the nav link, Enter, and focus lands on the section's heading.
    await page.getByRole('link', { name: 'Stations' }).focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('stations-h');
    for (const name of ['HCS1', 'HCS2']) {
      const hcs = device(world, name).address;
      const onChain = await world.operator.meanRating(hcs);
      const count = await world.operator.ratingCount(hcs);
      const row = page.locator(`#stations-table tr[data-hcs="${hcs}"]`);
      await expect.poll(() => row.locator('td').nth(3).textContent()).toBe(`${(onChain / 100).toFixed(2)} ★`);
      expect(await row.locator('td').nth(4).textContent()).toBe(String(count));
    }
    expect(await world.operator.meanRating(device(world, 'HCS1').address)).toBe(450);
  });

  it('ranks the stations as an EV at a given point would get them', async () => {
    await page.goto(`${base}#stations`);
    await page.getByLabel('Latitude').fill('52.5005');
    await page.getByLabel('Longitude').fill('13.4495');
    await page.getByLabel('Radius (km)').fill('20');
    await page.getByRole('button', { name: 'Rank stations' }).click();
    const items = page.locator('#suggestion-list li');
    await expect.poll(() => items.count()).toBe(2);
    // HCS2 is 60 m away at 2 stars; HCS1 ~3.7 km away at 4.5: distance wins.
    expect(await items.nth(0).getAttribute('data-hcs')).toBe(device(world, 'HCS2').address);
    expect(await page.locator('#map svg a').count()).toBe(2);
    await page.screenshot({ path: new URL('web-stations.png', SHOTS).pathname, fullPage: true });
  });

  it("gives a member a statement that balances and equals the contract's own balance", async () => {
    for (const name of ['EV1', 'HCS1']) {
      const member = device(world, name).address;
      await page.goto(`${base}#statement?member=${member}`);
      // Only the hash changes: wait for this member's statement, not the previous one.
      await expect.poll(() => page.locator('#statement-body').textContent()).toContain(`Member ${member}`);
      await expect
        .poll(() => page.locator('#st-check').textContent())
        .toMatch(/equals the contract's own figure/);
      const figure = async (id: string) => wei((await page.locator(`#st-${id}`).textContent())!);
      const [opening, deposits, payments, earnings, withdrawals, closing] = await Promise.all(
        ['opening', 'deposits', 'payments', 'earnings', 'withdrawals', 'closing'].map(figure),
      );
      expect(opening! + deposits! - payments! + earnings! - withdrawals!).toBe(closing);
      const mine = runs.filter((r) => r.ev === member || r.hcs === member);
      const moved = mine.reduce((t, r) => t + billWei(billedOf(r), r.price), 0n);
      if (name === 'EV1') {
        expect(payments).toBe(moved);
        const d = await world.operator.depositOf(member);
        expect(closing).toBe(d.balance + d.pendingWithdrawal);
        expect(formatEther(deposits!)).toBe('10.0');
        await page.screenshot({ path: new URL('web-statement.png', SHOTS).pathname });
      } else {
        expect(earnings).toBe(moved);
        expect(closing).toBe(await world.operator.earningsOf(member));
      }
    }
  });
});

// Where the browser is missing, say so in the report instead of passing silently.
if (!existsSync(CHROMIUM))
  it.skip(`members' page: skipped, ${CHROMIUM} is absent (apt-get install -y chromium)`, () => {});
