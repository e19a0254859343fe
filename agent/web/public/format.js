// Display helpers. Amounts arrive as decimal strings of wei and stay BigInt: a Number loses wei.

/** wei (string) → ether with up to `digits` decimals, trailing zeros dropped. */
export function ether(wei, digits = 8) {
  const v = BigInt(wei);
  const neg = v < 0n;
  const abs = neg ? -v : v;
  const whole = abs / 10n ** 18n;
  const frac = (abs % 10n ** 18n).toString().padStart(18, '0').slice(0, digits).replace(/0+$/, '');
  return `${neg ? '−' : ''}${whole}${frac ? `.${frac}` : ''}`;
}

/** Wh → "1.234 kWh". */
export function kwh(wh) {
  if (wh === undefined || wh === null) return '—';
  return `${(Number(wh) / 1000).toFixed(3)} kWh`;
}

export function short(addr) {
  return addr ? `${addr.slice(0, 6)}…${addr.slice(-4)}` : '—';
}

/** Unix seconds → "YYYY-MM-DD HH:MM:SS" in UTC (the same on every member's screen). */
export function utc(seconds) {
  return new Date(Number(seconds) * 1000).toISOString().replace('T', ' ').slice(0, 19);
}

/** A yyyy-mm-dd date input → unix seconds at the start (or end) of that UTC day. */
export function dayBound(value, end) {
  if (!value) return undefined;
  const t = Date.parse(`${value}T00:00:00Z`) / 1000;
  return end ? t + 86_399 : t;
}

export function stars(hundredths, count) {
  return Number(count) === 0 ? 'unrated' : `${(Number(hundredths) / 100).toFixed(2)} ★`;
}

/** A text node or element; `el('td', {}, 'x')`. Children are text unless they are nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** An address shown short, with the whole of it for hover, screen readers and copying. */
export function addr(a, href) {
  const text = el('abbr', { title: a }, short(a));
  // The visible (short) text is the link's name (WCAG 2.5.3); the whole address is its title.
  return href ? el('a', { href }, text) : text;
}

/** "1.5" (ETH) → wei as a BigInt; throws on anything but a plain non-negative decimal. */
export function parseEther(text) {
  const m = /^\s*(\d*)(?:\.(\d{0,18}))?\s*$/.exec(String(text));
  if (!m || (m[1] === '' && !m[2])) throw new Error(`not an amount of ETH: ${text}`);
  return BigInt(m[1] || '0') * 10n ** 18n + BigInt((m[2] ?? '').padEnd(18, '0') || '0');
}

/** Power in W as the meter stands for it: "11.00 kW", "950 W". */
export function power(w) {
  if (w === undefined || w === null) return '—';
  return Math.abs(w) >= 1000 ? `${(w / 1000).toFixed(2)} kW` : `${Math.round(w)} W`;
}
