// The members' page: one HTML file, sections shown by the URL's hash (#stations, #sessions?…,
// #statement?…, #device, #wallet), every figure fetched from the read-only API over the chain
// indexer; the device pushed live (server-sent events); a charge started and stopped through the
// control port (its token is in this page's HTML only when the control port served it).
import { drawMonthly } from './charts.js';
import { addr, dayBound, el, ether, kwh, short, stars, utc } from './format.js';
import { closeLive } from './live.js';
import { drawMap } from './map.js';
import { connect, discoverWallets, runTransaction } from './wallet.js';

import { $, api, explain, fail, sayer, state } from './api.js';
import { showWallet, walletAction } from './account.js';
import { acceptTerms, canCharge, pickStation, quote, showDevice, startCharge, stopCharge } from './device.js';
// ------------------------------------------------------------------ chain status

async function showChain() {
  try {
    const i = await api('info');
    state.info = i;
    const behind = i.head - (i.indexedBlock ?? 0);
    $('#chain').textContent =
      `Contract ${i.contract} on chain ${i.chainId}; indexed to block ${i.indexedBlock ?? '—'} of ${i.head}` +
      ` (${i.confirmations} confirmation${i.confirmations === 1 ? '' : 's'}${behind > i.confirmations ? ', catching up' : ''})` +
      (i.reorgs ? `; ${i.reorgs} reorg${i.reorgs === 1 ? '' : 's'} handled` : '') +
      (i.lastError ? `; last error: ${i.lastError}` : '');
    $('a[href="#device"]').parentElement.hidden = !i.devices;
  } catch (err) {
    $('#chain').textContent = `The chain indexer is not answering: ${err.message}`;
  }
}

// ------------------------------------------------------------------ stations

async function showStations(params) {
  const tbody = $('#stations-table tbody');
  const ev = state.info?.ev;
  const at =
    params.get('lat') && params.get('lon')
      ? { latitude: Number(params.get('lat')), longitude: Number(params.get('lon')) }
      : ev
        ? { latitude: ev.latitude, longitude: ev.longitude }
        : undefined;
  const radiusKm = Number(params.get('radiusKm') ?? (ev ? ev.radiusM / 1000 : 10));
  const form = $('#rank-form');
  if (at) {
    form.lat.value = at.latitude;
    form.lon.value = at.longitude;
    form.radiusKm.value = radiusKm;
  }
  try {
    const { stations, suggestion } = await api('stations', {
      lat: at?.latitude,
      lon: at?.longitude,
      radiusM: at ? Math.round(radiusKm * 1000) : undefined,
    });
    state.stations = stations;
    state.suggestion = suggestion ?? [];
    tbody.replaceChildren(
      ...stations.map((s) =>
        el(
          'tr',
          { dataset: { hcs: s.hcs } },
          el('th', { scope: 'row' }, addr(s.hcs, `#sessions?member=${s.hcs}`)),
          el('td', {}, `${s.latitude.toFixed(5)}, ${s.longitude.toFixed(5)}`),
          el('td', { class: 'num' }, ether(s.priceWeiPerKWh)),
          el('td', { class: 'num' }, `${(s.powerW / 1000).toFixed(1)} kW`),
          el('td', { class: 'num', dataset: { mean: s.meanRating } }, stars(s.meanRating, s.ratingCount)),
          el('td', { class: 'num' }, s.ratingCount),
          el('td', { class: 'num' }, s.sessions),
          el('td', {}, s.status === 'verified' ? 'open to book' : `not bookable (${s.status})`),
        ),
      ),
    );
    drawMap($('#map'), $('#map-note'), state.info ?? {}, stations, {
      at,
      radiusM: radiusKm * 1000,
      suggestion: state.suggestion,
      ...(canCharge() ? { onPick: pickStation } : {}),
    });
    const box = $('#suggestion');
    if (!suggestion) box.replaceChildren();
    else if (suggestion.length === 0)
      box.replaceChildren(el('p', {}, 'No verified station within the radius.'));
    else
      box.replaceChildren(
        el('h3', {}, 'Suggestion, best first'),
        el(
          'ol',
          { id: 'suggestion-list' },
          ...suggestion.map((s) =>
            el(
              'li',
              { dataset: { hcs: s.hcs } },
              addr(s.hcs),
              ` — ${(s.distanceM / 1000).toFixed(2)} km, ${stars(s.meanRating, s.ratingCount)}, ${ether(s.priceWeiPerKWh)} ETH/kWh`,
            ),
          ),
        ),
      );
  } catch (err) {
    fail($('#suggestion'), err);
  }
}

// ------------------------------------------------------------------ sessions

/** A side's own figure; "not readable" when the settling call was not a direct one of ours. */
function energyCell(wh) {
  return el('td', { class: 'num' }, wh === undefined ? 'not readable' : kwh(wh));
}

function rateButton(s) {
  if (!state.account || s.ev !== state.account || s.rating !== undefined || s.outcome === 'expired')
    return undefined;
  return el('button', { type: 'button', class: 'rate', dataset: { txid: s.txid } }, 'Rate');
}

async function showSessions(params) {
  state.sessions = params;
  const form = $('#sessions-form');
  for (const name of ['member', 'outcome', 'rated', 'from', 'to', 'pageSize'])
    form[name].value = params.get(name) ?? (name === 'pageSize' ? '20' : '');
  const tbody = $('#sessions-table tbody');
  try {
    const r = await api('sessions', {
      member: params.get('member'),
      outcome: params.get('outcome'),
      rated: params.get('rated'),
      from: dayBound(params.get('from'), false),
      to: dayBound(params.get('to'), true),
      page: params.get('page'),
      pageSize: params.get('pageSize'),
    });
    tbody.replaceChildren(
      ...r.items.map((s) =>
        el(
          'tr',
          { dataset: { txid: s.txid } },
          el('td', {}, utc(s.time)),
          el('td', { class: 'num' }, s.block),
          el('td', {}, el('abbr', { title: `${s.txHash} (session ${s.txid})` }, short(s.txHash))),
          el('td', {}, addr(s.ev, `#sessions?member=${s.ev}`)),
          el('td', {}, addr(s.hcs, `#sessions?member=${s.hcs}`)),
          energyCell(s.evEnergyWh),
          energyCell(s.hcsEnergyWh),
          el('td', { class: 'num' }, kwh(s.billedWh)),
          el('td', { class: 'num amount' }, ether(s.amountWei)),
          el('td', {}, s.outcome),
          el(
            'td',
            { class: 'rating' },
            s.rating === undefined
              ? 'not rated'
              : `${'★'.repeat(s.rating)}${'☆'.repeat(5 - s.rating)} ${s.comment}`,
            ' ',
            rateButton(s),
          ),
        ),
      ),
    );
    $('#sessions-summary').textContent =
      `${r.total} session${r.total === 1 ? '' : 's'}, ${kwh(r.totals.billedWh)} billed, ${ether(r.totals.amountWei)} ETH in all.` +
      (r.window === undefined
        ? ''
        : ` The list shows the network's newest ${r.window}: filter by a member (EV or station) for all of its sessions.`);
    $('#page-of').textContent = `Page ${r.page} of ${r.pages}`;
    $('#prev').disabled = r.page <= 1;
    $('#next').disabled = r.page >= r.pages;
    $('#prev').dataset.page = r.page - 1;
    $('#next').dataset.page = r.page + 1;
  } catch (err) {
    fail($('#sessions-summary'), err);
  }
}

// ------------------------------------------------------------------ statement

const KIND = {
  deposit: 'Deposit',
  payment: 'Payment for a session',
  earning: 'Earning from a session',
  withdrawal: 'Withdrawal',
  'withdrawal-requested': 'Withdrawal announced',
  'withdrawal-cancelled': 'Withdrawal cancelled',
};

async function showStatement(params) {
  const form = $('#statement-form');
  for (const name of ['member', 'from', 'to']) form[name].value = params.get(name) ?? '';
  const body = $('#statement-body');
  const member = params.get('member') ?? state.account;
  if (!member) {
    body.replaceChildren(el('p', {}, 'Enter a member address (or connect a wallet) to see its statement.'));
    return;
  }
  form.member.value = member;
  try {
    const s = await api('statement', {
      member,
      from: dayBound(params.get('from'), false),
      to: dayBound(params.get('to'), true),
    });
    const balanced =
      BigInt(s.openingWei) +
        BigInt(s.depositsWei) -
        BigInt(s.paymentsWei) +
        BigInt(s.earningsWei) -
        BigInt(s.withdrawalsWei) ===
      BigInt(s.closingWei);
    const matches = s.onChainWei === undefined ? undefined : BigInt(s.onChainWei) === BigInt(s.closingWei);
    const row = (label, wei, id) =>
      el('div', {}, el('dt', {}, label), el('dd', { id, class: 'num' }, `${ether(wei)} ETH`));
    body.replaceChildren(
      el(
        'p',
        {},
        `Member ${s.member}, ${s.role === 'ev' ? 'an EV (its deposit)' : s.role === 'hcs' ? 'a station (its earnings)' : 'not registered'}.`,
      ),
      el(
        'dl',
        { class: 'totals' },
        row('Opening balance', s.openingWei, 'st-opening'),
        row('Deposits', s.depositsWei, 'st-deposits'),
        row('Payments', s.paymentsWei, 'st-payments'),
        row('Earnings', s.earningsWei, 'st-earnings'),
        row('Withdrawals', s.withdrawalsWei, 'st-withdrawals'),
        row('Closing balance', s.closingWei, 'st-closing'),
      ),
      el(
        'p',
        { id: 'st-check', class: balanced && matches !== false ? 'ok' : 'error' },
        balanced
          ? 'Opening + deposits − payments + earnings − withdrawals = closing.'
          : 'The movements do not add up.',
        matches === undefined
          ? ''
          : matches
            ? ` The closing balance equals the contract's own figure at block ${s.atBlock}.`
            : ` The contract says ${ether(s.onChainWei)} ETH at block ${s.atBlock}.`,
      ),
      el(
        'div',
        { class: 'scroll', dataset: { label: 'Movements table (scrolls sideways)' } },
        el(
          'table',
          { id: 'statement-table' },
          el('caption', {}, 'Movements in the period'),
          el(
            'thead',
            {},
            el(
              'tr',
              {},
              ...['Date (UTC)', 'Block', 'What', 'Change (ETH)', 'Balance (ETH)'].map((h) =>
                el('th', { scope: 'col' }, h),
              ),
            ),
          ),
          el(
            'tbody',
            {},
            ...s.lines.map((l) =>
              el(
                'tr',
                { dataset: { kind: l.kind } },
                el('td', {}, utc(l.time)),
                el('td', { class: 'num' }, l.block),
                el(
                  'td',
                  {},
                  KIND[l.kind],
                  l.noteWei ? ` (${ether(l.noteWei)} ETH)` : '',
                  l.txid ? ` ${short(l.txid)}` : '',
                ),
                el('td', { class: 'num' }, ether(l.deltaWei)),
                el('td', { class: 'num' }, ether(l.balanceWei)),
              ),
            ),
          ),
        ),
      ),
    );
    for (const box of body.querySelectorAll('.scroll')) scrollable(box);
    const q = new URLSearchParams({ member });
    const from = dayBound(params.get('from'), false);
    const to = dayBound(params.get('to'), true);
    if (from !== undefined) q.set('from', from);
    if (to !== undefined) q.set('to', to);
    const csv = $('#statement-csv');
    csv.href = `api/statement.csv?${q}`;
    csv.hidden = false;
    $('#monthly-figure').hidden = s.monthly.length === 0;
    if (s.monthly.length) drawMonthly($('#monthly-chart'), s.monthly, s.role);
  } catch (err) {
    fail(body, err);
  }
}

// ------------------------------------------------------------------ wallet and rating

function setAccount(account) {
  state.account = account;
  $('#account').textContent = account ? `Connected: ${short(account)}` : '';
  $('#account').title = account ?? '';
  $('#mine').hidden = !account;
  $('#connect').hidden = Boolean(account) || !state.wallet;
}

async function openRating(txid) {
  const dialog = $('#rate-dialog');
  const form = $('#rate-form');
  $('#rate-what').textContent = `Session ${short(txid)}`;
  $('#rate-status').textContent = '';
  form.dataset.txid = txid;
  dialog.showModal();
}

async function submitRating(event) {
  const form = $('#rate-form');
  if (event.submitter?.value !== 'sign') return;
  event.preventDefault();
  const status = $('#rate-status');
  const say = sayer(status);
  try {
    const call = await api('rate-call', {
      txid: form.dataset.txid,
      member: state.account,
      rating: form.rating.value,
      comment: form.comment.value,
    });
    const hash = await runTransaction(state.wallet, call, say, explain);
    if (!hash) return;
    // The rating shows once the indexer reaches its block: look again shortly, twice.
    setTimeout(() => {
      $('#rate-dialog').close();
      route();
    }, 1500);
    setTimeout(route, 4000);
  } catch (err) {
    say('failed', err.message ?? String(err));
  }
}

// ------------------------------------------------------------------ routing

function route() {
  const [name, query] = (location.hash.slice(1) || 'stations').split('?');
  const params = new URLSearchParams(query ?? '');
  const section = document.getElementById(name) ?? $('#stations');
  for (const s of document.querySelectorAll('main > section')) s.hidden = s !== section;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#${section.id}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (section.id !== 'device') closeLive();
  const info = showChain();
  // The map and the charge form need the chain's info (tiles, the EV's position) first.
  return info.then(() => {
    if (section.id === 'stations') return showStations(params);
    if (section.id === 'sessions') return showSessions(params);
    if (section.id === 'statement') return showStatement(params);
    if (section.id === 'device') return showDevice();
    if (section.id === 'wallet') return showWallet();
  });
}

/** A form's fields as the hash's query (empty ones left out). */
function formHash(section, form) {
  const q = new URLSearchParams([...new FormData(form)].filter(([, v]) => v !== ''));
  return `#${section}${q.size ? `?${q}` : ''}`;
}

/**
 * A box that scrolls sideways (a wide table on a phone) must be reachable from the keyboard
 * (WCAG 2.1.1): focusable, and named as a region. Set here, where the linter's HTML rules do not
 * see the reason.
 */
function scrollable(box) {
  box.tabIndex = 0;
  box.setAttribute('role', 'region');
  box.setAttribute('aria-label', box.dataset.label ?? 'Table (scrolls sideways)');
  return box;
}

function wire() {
  for (const box of document.querySelectorAll('.scroll')) scrollable(box);
  $('#rank-form').addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = formHash('stations', e.target);
  });
  $('#sessions-form').addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = formHash('sessions', e.target);
  });
  $('#statement-form').addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = formHash('statement', e.target);
  });
  for (const id of ['#prev', '#next']) {
    $(id).addEventListener('click', (e) => {
      const q = new URLSearchParams(state.sessions);
      q.set('page', e.target.dataset.page);
      location.hash = `#sessions?${q}`;
    });
  }
  $('#mine').addEventListener('click', () => {
    location.hash = `#sessions?member=${state.account}`;
  });
  $('#sessions-table').addEventListener('click', (e) => {
    const button = e.target.closest('button.rate');
    if (button) openRating(button.dataset.txid);
  });
  $('#rate-form').addEventListener('submit', submitRating);
  $('#charge-form').addEventListener('submit', startCharge);
  $('#charge-form').addEventListener('input', quote);
  $('#charge-stop').addEventListener('click', stopCharge);
  $('#charge-accept').addEventListener('click', acceptTerms);
  for (const form of document.querySelectorAll('.wallet-action'))
    form.addEventListener('submit', walletAction);

  window.addEventListener('hashchange', () => {
    route();
    // Move focus to the new section's heading, so keyboard and screen-reader users land there.
    const name = (location.hash.slice(1) || 'stations').split('?')[0];
    document.getElementById(`${name}-h`)?.focus();
  });
  discoverWallets((wallets) => {
    $('#connect').hidden = wallets.length === 0;
    state.wallet = wallets[0];
  });
  $('#connect').addEventListener('click', async () => {
    try {
      setAccount(await connect(state.wallet));
      route();
    } catch (err) {
      $('#account').textContent = `Wallet: ${err.message ?? err}`;
    }
  });
  route();
}

wire();
