// The members' page: one HTML file, sections shown by the URL's hash (#stations, #sessions?…,
// #statement?…, #device, #wallet), every figure fetched from the read-only API over the chain
// indexer; the device pushed live (server-sent events); a charge started and stopped through the
// control port (its token is in this page's HTML only when the control port served it).
import { drawChargeCurve, drawMonthly } from './charts.js';
import { addr, dayBound, el, ether, kwh, parseEther, power, short, stars, utc } from './format.js';
import { closeLive, openLive } from './live.js';
import { drawMap } from './map.js';
import { connect, discoverWallets, runTransaction } from './wallet.js';

const $ = (sel) => document.querySelector(sel);
const state = {
  wallet: undefined,
  account: undefined,
  sessions: new URLSearchParams(),
  info: undefined,
  stations: [],
  suggestion: [],
  device: undefined,
  traceFor: undefined,
};
/** The control token (only on the control port's page): the POSTs that start and stop a charge. */
const controlToken = document.querySelector('meta[name="p2pev-control"]')?.content ?? '';

async function control(action, body = {}) {
  const res = await fetch(action, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${controlToken}` },
    body: JSON.stringify(body),
  });
  const answer = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(answer.error ?? `HTTP ${res.status}`);
  return answer;
}

/** A contract error's revert data as a sentence (the ABI's custom errors, in words). */
async function explain(data) {
  try {
    return (await api('error', { data })).sentence;
  } catch {
    return 'The contract refused the call.';
  }
}

async function api(path, params = {}) {
  const q = new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ''),
  );
  const res = await fetch(`api/${path}${q.size ? `?${q}` : ''}`);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`);
  return body;
}

function fail(where, err) {
  where.replaceChildren(el('p', { class: 'error', role: 'alert' }, err.message));
}

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
      `${r.total} session${r.total === 1 ? '' : 's'}, ${kwh(r.totals.billedWh)} billed, ${ether(r.totals.amountWei)} ETH in all.`;
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

// ------------------------------------------------------------------ device (live)

const STATE_WORDS = {
  searching: 'searching for a station',
  requesting: 'asking a station',
  offered: 'offered to an EV',
  awaitingMutual: 'terms agreed, about to start',
  charging: 'charging',
  awaitingSettlement: 'charged; waiting for the bill on chain',
  done: 'done: the bill is on chain',
  failed: 'ended without a charge',
};

function row(label, value, cls) {
  return el('div', {}, el('dt', {}, label), el('dd', cls ? { class: cls } : {}, value));
}

function deviceTile(d) {
  const s = d.session;
  if (!d.reachable)
    return el(
      'article',
      { class: 'device' },
      el('h3', {}, d.name),
      el('p', { class: 'error' }, `unreachable: ${d.error}`),
    );
  const terms = s?.terms;
  return el(
    'article',
    { class: 'device', 'aria-label': `${d.name} (${d.role})`, dataset: { state: s?.state ?? 'idle' } },
    el('h3', {}, `${d.name} `, el('small', {}, d.role)),
    el(
      'dl',
      {},
      row('Address', addr(d.address)),
      row('Meter energy', kwh(d.meter?.energyWh), 'num meter-energy'),
      row('Meter power', power(d.meter?.powerW), 'num meter-power'),
      row(
        'Session',
        [
          s
            ? `${STATE_WORDS[s.state] ?? s.state}${s.peer ? ` with ${short(s.peer)}` : ''}`
            : 'none in progress',
          s?.error ? ` (${s.error})` : '',
        ],
        'session-state',
      ),
      s?.energyWh !== undefined
        ? row(
            'Charged',
            [
              `${kwh(s.energyWh)}${s.targetWh ? ` of ${kwh(s.targetWh)}` : ''}`,
              s.targetWh
                ? el('progress', {
                    max: s.targetWh,
                    value: Math.min(s.energyWh, s.targetWh),
                    'aria-label': 'Charge progress',
                  })
                : '',
            ],
            'session-energy',
          )
        : undefined,
      terms
        ? row(
            'Agreed terms',
            `${ether(terms.priceWeiPerKWh)} ETH/kWh, at most ${kwh(terms.maxEnergyWh)}, settle by ${utc(terms.settleBy)} UTC`,
            'session-terms',
          )
        : undefined,
      s?.predictedWei !== undefined
        ? row('Bill so far', `${ether(s.predictedWei)} ETH`, 'num session-bill')
        : undefined,
      s?.reserved !== undefined
        ? row(
            'Reservation',
            s.reserved ? 'the cap is reserved on chain' : 'waiting for the reservation on chain',
            'session-reservation',
          )
        : undefined,
      s?.receipt
        ? row(
            'Signed receipt',
            `${s.receipt.index ? `#${s.receipt.index}: ` : ''}${kwh(s.receipt.wh)}${s.receipt.at ? ` at ${utc(s.receipt.at / 1000).slice(11)}` : ''}`,
            'session-receipt',
          )
        : undefined,
    ),
  );
}

async function showCurve(d) {
  const s = d?.session;
  const fig = $('#curve-figure');
  if (!s || s.energyWh === undefined || !['charging', 'awaitingSettlement', 'done'].includes(s.state)) {
    if (!s) fig.hidden = true;
    return;
  }
  try {
    const { points } = await api('trace', { id: s.id });
    if (!points.length) return;
    fig.hidden = false;
    drawChargeCurve($('#curve-chart'), points);
    $('#curve-caption').textContent =
      `This charge: energy (kWh) and the meter's power (kW) over time; ${points.length} readings, the last ${kwh(points.at(-1).wh)}` +
      (points.some((p) => p.receiptWh !== undefined)
        ? `, ${points.filter((p) => p.receiptWh !== undefined).length} signed receipts (dots)`
        : '') +
      '.';
  } catch {
    // The next push draws it.
  }
}

function renderDevices(devices) {
  $('#devices').replaceChildren(...devices.map(deviceTile));
  const mine = devices[0];
  state.device = mine;
  if (canCharge()) {
    const charging = mine?.session?.state === 'charging';
    const busy = mine?.session && !['done', 'failed', 'awaitingSettlement'].includes(mine.session.state);
    $('#charge-stop').disabled = !charging;
    $('#charge-start').disabled = Boolean(busy);
  }
  void showCurve(mine);
}

/** This page may start a charge: served by an EV's own control port (it holds the token). */
function canCharge() {
  return Boolean(controlToken) && state.info?.ev !== undefined;
}

function pickStation(hcs) {
  // The charge form is rebuilt when the device section opens: it takes the pick from here.
  state.pick = hcs;
  location.hash = '#device';
}

/** The charge's quote before it starts: which station, what the target buys, what it may cost. */
function chargeTarget() {
  const form = $('#charge-form');
  const hcs = form.hcs.value;
  const candidates = hcs ? state.stations.filter((s) => s.hcs === hcs) : state.suggestion;
  if (!candidates.length) return { error: 'No station is open to book within the search radius.' };
  // For a target in money, the dearest candidate's price: the charge never costs more than asked.
  const price = candidates.map((s) => BigInt(s.priceWeiPerKWh)).reduce((a, b) => (a > b ? a : b));
  let targetWh;
  try {
    targetWh =
      form.unit.value === 'eth'
        ? Number((parseEther(form.amount.value) * 1000n) / price)
        : Math.round(Number(form.amount.value) * 1000);
  } catch (err) {
    return { error: err.message };
  }
  if (!Number.isFinite(targetWh) || targetWh < 1) return { error: 'Give a target of at least 1 Wh.' };
  const station = candidates[0];
  const costWei = (BigInt(targetWh) * price) / 1000n;
  return { hcs, station, targetWh, price, costWei, candidates };
}

function quote() {
  if (!canCharge()) return;
  const t = chargeTarget();
  const out = $('#charge-quote');
  if (t.error) {
    out.textContent = t.error;
    return;
  }
  const where = t.hcs
    ? `station ${short(t.hcs)}`
    : `the edge's best suggestion (${t.candidates.length} nearby, first ${short(t.station.hcs)})`;
  const minutes = Math.round((t.targetWh / t.station.powerW) * 60);
  out.textContent =
    `Before you start: ${where}, ${ether(t.price)} ETH/kWh at most, ${kwh(t.targetWh)} for at most ${ether(t.costWei)} ETH` +
    `, about ${minutes} min at ${(t.station.powerW / 1000).toFixed(1)} kW. The station's signed terms show below before the charge starts.`;
}

async function startCharge(event) {
  event.preventDefault();
  const status = $('#charge-status');
  const t = chargeTarget();
  if (t.error) {
    status.textContent = t.error;
    return;
  }
  const ev = state.info.ev;
  try {
    status.textContent = 'Asking for a station…';
    const r = await control('charge', {
      targetWh: t.targetWh,
      latitude: ev.latitude,
      longitude: ev.longitude,
      radiusM: ev.radiusM,
      ...(t.hcs ? { hcs: t.hcs } : {}),
    });
    status.textContent = `Session ${r.id}: ${STATE_WORDS[r.state] ?? r.state}. Its terms show below as soon as a station offers them.`;
  } catch (err) {
    status.textContent = `Not started: ${err.message}`;
  }
}

async function stopCharge() {
  const status = $('#charge-status');
  try {
    const r = await control('stop');
    status.textContent = `Stopped: ${STATE_WORDS[r.state] ?? r.state}.`;
  } catch (err) {
    status.textContent = `Not stopped: ${err.message}`;
  }
}

async function showDevice() {
  if (canCharge()) {
    $('#charge-form').hidden = false;
    if (!state.suggestion.length || !state.stations.length) {
      const ev = state.info.ev;
      const r = await api('stations', { lat: ev.latitude, lon: ev.longitude, radiusM: ev.radiusM });
      state.stations = r.stations;
      state.suggestion = r.suggestion ?? [];
    }
    const select = $('#charge-station');
    const keep = select.value;
    select.replaceChildren(
      el('option', { value: '' }, "The edge's suggestion (best first)"),
      ...state.suggestion.map((s, i) =>
        el(
          'option',
          { value: s.hcs },
          `#${i + 1} ${short(s.hcs)} — ${(s.distanceM / 1000).toFixed(2)} km, ${ether(s.priceWeiPerKWh)} ETH/kWh`,
        ),
      ),
      ...state.stations
        .filter((s) => s.status === 'verified' && !state.suggestion.some((x) => x.hcs === s.hcs))
        .map((s) =>
          el(
            'option',
            { value: s.hcs },
            `${short(s.hcs)} — ${ether(s.priceWeiPerKWh)} ETH/kWh (outside the radius)`,
          ),
        ),
    );
    select.value = state.pick ?? keep;
    if (state.pick) select.focus();
    state.pick = undefined;
    quote();
  }
  openLive(renderDevices, (text) => {
    $('#live-status').textContent = text;
  });
}

// ------------------------------------------------------------------ wallet actions

const ETH_DIGITS = 6;

async function showWallet() {
  const box = $('#wallet-account');
  for (const form of document.querySelectorAll('.wallet-action')) form.hidden = !state.account;
  if (!state.account) {
    box.replaceChildren(
      el(
        'p',
        {},
        state.wallet
          ? 'Connect your wallet (top right) to see your account and act on it.'
          : 'No browser wallet was found: install one (any EIP-6963 wallet) to act from this page.',
      ),
    );
    return;
  }
  try {
    const a = await api('account', { address: state.account });
    state.accountInfo = a;
    box.replaceChildren(
      el(
        'dl',
        { class: 'totals', id: 'account-figures' },
        row('Account', addr(a.address)),
        row(
          'Member',
          a.role === 'none' ? 'not registered' : `${a.role.toUpperCase()}, ${a.status}`,
          'acct-member',
        ),
        row('Deposit', `${ether(a.depositWei, ETH_DIGITS)} ETH`, 'num acct-deposit'),
        row(
          'Announced withdrawal',
          a.pendingWithdrawalWei === '0'
            ? 'none'
            : `${ether(a.pendingWithdrawalWei, ETH_DIGITS)} ETH from ${utc(a.withdrawableAt)} UTC`,
          'acct-pending',
        ),
        a.role === 'hcs'
          ? row('Earnings', `${ether(a.earningsWei, ETH_DIGITS)} ETH`, 'num acct-earnings')
          : undefined,
        row('In the wallet', `${ether(a.etherWei, ETH_DIGITS)} ETH`, 'num acct-ether'),
      ),
    );
  } catch (err) {
    fail(box, err);
  }
}

async function walletAction(event) {
  event.preventDefault();
  const form = event.target;
  const fn = form.id.slice(2);
  const status = form.querySelector('.tx-status');
  const say = (kind, text) => {
    status.dataset.state = kind;
    status.textContent = `${kind === 'pending' ? 'Pending' : kind === 'confirmed' ? 'Confirmed' : 'Failed'}: ${text}`;
  };
  if (!state.wallet || !state.account) return say('failed', 'connect your wallet first.');
  try {
    const params = { fn, from: state.account };
    if (form.identity) params.identity = form.identity.value;
    if (form.amount) params.amountWei = parseEther(form.amount.value).toString();
    const call = await api('call', params);
    const button = form.querySelector('button');
    button.disabled = true;
    await runTransaction(state.wallet, call, say, explain);
    button.disabled = false;
    await showWallet();
  } catch (err) {
    say('failed', err.message);
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
  const say = (kind, text) => {
    status.dataset.state = kind;
    status.textContent = `${kind === 'pending' ? 'Pending' : kind === 'confirmed' ? 'Confirmed' : 'Failed'}: ${text}`;
  };
  try {
    const call = await api('rate-call', {
      txid: form.dataset.txid,
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
