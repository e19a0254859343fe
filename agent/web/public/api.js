// What every part of the page shares: the state, the read-only API, the control port's POSTs
// (with the token this page carries only when the control port served it), errors in words.
import { el } from './format.js';

export const $ = (sel) => document.querySelector(sel);

export const state = {
  wallet: undefined,
  account: undefined,
  sessions: new URLSearchParams(),
  info: undefined,
  stations: [],
  suggestion: [],
  device: undefined,
  /** A station picked on the map, for the charge form when it opens. */
  pick: undefined,
};

/** The control token (only on the control port's page): the POSTs that start and stop a charge. */
export const controlToken = document.querySelector('meta[name="p2pev-control"]')?.content ?? '';

export async function control(action, body = {}) {
  const res = await fetch(action, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${controlToken}` },
    body: JSON.stringify(body),
  });
  const answer = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(answer.error ?? `HTTP ${res.status}`);
  return answer;
}

export async function api(path, params = {}) {
  const q = new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ''),
  );
  const res = await fetch(`api/${path}${q.size ? `?${q}` : ''}`);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`);
  return body;
}

/** A contract error's revert data as a sentence (the ABI's custom errors, in words). */
export async function explain(data) {
  try {
    return (await api('error', { data })).sentence;
  } catch {
    return 'The contract refused the call.';
  }
}

export function fail(where, err) {
  where.replaceChildren(el('p', { class: 'error', role: 'alert' }, err.message));
}

/** A label and its figure in a tile (dt/dd). */
export function row(label, value, cls) {
  return el('div', {}, el('dt', {}, label), el('dd', cls ? { class: cls } : {}, value));
}

/** "Pending: …", "Confirmed: …", "Failed: …" in a status line, its state for styling. */
export function sayer(status) {
  return (kind, text) => {
    status.dataset.state = kind;
    status.textContent = `${kind === 'pending' ? 'Pending' : kind === 'confirmed' ? 'Confirmed' : 'Failed'}: ${text}`;
  };
}
