/**
 * `p2pev status`: what the running agent is doing, read from its local control port
 * (`GET /status`, loopback), printed as a short report or as the JSON the agent returned.
 */
import { existsSync } from 'node:fs';
import { formatEther } from 'ethers';
import { loadConfig } from '../core/config.js';
import type { Telemetry } from './telemetry.js';

export interface ControlEndpoint {
  host: string;
  port: number;
}

/** Where the agent listens: `--port` wins, else the config's control section. */
export function controlEndpoint(opts: { config?: string; port?: number; host?: string }): ControlEndpoint {
  if (opts.port !== undefined) {
    if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535)
      throw new Error(`--port ${opts.port} is not a TCP port (1..65535)`);
    return { host: opts.host ?? '127.0.0.1', port: opts.port };
  }
  const path = opts.config ?? 'agent.config.json';
  const cfg = loadConfig(path);
  if (!cfg.control.port)
    throw new Error(
      `${path} has no control port: add "control": { "port": 8911 } and restart the agent (or pass --port)`,
    );
  return { host: opts.host ?? cfg.control.host, port: cfg.control.port };
}

/** GET /status; an Error that says what to check when nothing answers. */
export async function fetchStatus(ep: ControlEndpoint, timeoutMs = 5000): Promise<Record<string, unknown>> {
  const url = `http://${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}/status`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const code = cause?.code ?? cause?.message ?? (err as Error).name;
    // Under systemd the service's state and log; on a bench (no systemd) how to start one.
    const check = existsSync('/run/systemd/system')
      ? 'systemctl status p2pev; journalctl --namespace p2pev -n 50'
      : 'no systemd here (a bench): start it with p2pev run --config FILE';
    throw new Error(`no agent answers on ${ep.host}:${ep.port} (${code}): is it running? ${check}`);
  }
  if (!res.ok) throw new Error(`${url} answered HTTP ${res.status}: is this the p2pev control port?`);
  try {
    return (await res.json()) as Record<string, unknown>;
  } catch {
    throw new Error(`${url} did not answer JSON: is this the p2pev control port?`);
  }
}

const ago = (ms: number) => {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120
    ? `${s} s ago`
    : s < 7200
      ? `${Math.round(s / 60)} min ago`
      : `${Math.round(s / 3600)} h ago`;
};
const eth = (wei: unknown) => (typeof wei === 'string' ? `${formatEther(BigInt(wei))} ETH` : '?');

/** ", 2.40 of 10.00 kWh (24 %)": how far a charge is towards its target. */
export function progress(x: { targetWh?: number; energyWh?: number }): string {
  if (x.energyWh === undefined) return '';
  const kwh = (wh: number) => (wh / 1000).toFixed(2);
  if (!x.targetWh) return `, ${kwh(x.energyWh)} kWh`;
  return `, ${kwh(x.energyWh)} of ${kwh(x.targetWh)} kWh (${Math.min(100, Math.floor((x.energyWh * 100) / x.targetWh))} %)`;
}

/** The status as a few lines for a person at a terminal. */
export function formatStatus(s: Record<string, unknown>): string {
  const st = s as {
    name: string;
    role: string;
    address: string;
    uptimeS: number;
    broker: { url: string; connected: boolean };
    chain: { rpcUrl: string; reachable: boolean; contract: string; chainId: number };
    meter?: { profile: string; serial: string };
    sessions: {
      id: string;
      state: string;
      txid?: string;
      peer?: string;
      targetWh?: number;
      energyWh?: number;
    }[];
    telemetry?: Telemetry;
    clock?: { jumps: number; totalJumpMs: number };
    edge?: { bills?: Record<string, number> };
    hcs?: { seq: string; pricePerKWhEther: number };
    charger?: {
      kind: string;
      connected?: boolean;
      status?: string;
      raw?: string;
      energyWh?: number;
      error?: string;
      failsafe?: { configured: boolean; worstCaseS?: number };
    };
  };
  const t = st.telemetry ?? {};
  const lines = [
    `${st.name} (${st.role}) ${st.address}, up ${Math.round(st.uptimeS / 60)} min`,
    `broker   ${st.broker.url}: ${st.broker.connected ? 'connected' : 'NOT CONNECTED'}`,
    `chain    ${st.chain.rpcUrl} (chain ${st.chain.chainId}, contract ${st.chain.contract}): ${st.chain.reachable ? 'reachable' : 'UNREACHABLE'}${t.chainError ? ` (${t.chainError})` : ''}`,
    `balance  ${eth(t.balanceWei)}${t.earningsWei ? `, earnings ${eth(t.earningsWei)}` : ''}${t.depositWei ? `, deposit available ${eth(t.depositWei)}` : ''}`,
  ];
  if (st.meter) {
    const r = t.reading;
    const parts = r
      ? [
          `${(r.energyWh / 1000).toFixed(3)} kWh`,
          ...(r.powerW !== undefined ? [`${Math.round(r.powerW)} W`] : []),
          ...(r.voltageV !== undefined ? [`${r.voltageV.toFixed(1)} V`] : []),
          ...(r.currentA !== undefined ? [`${r.currentA.toFixed(2)} A`] : []),
          `read ${ago(r.at)}`,
        ].join(', ')
      : 'no reading yet';
    lines.push(
      `meter    ${st.meter.profile} serial ${st.meter.serial}: ${parts}${t.meterError ? ` (last read failed: ${t.meterError})` : ''}`,
    );
  }
  if (st.hcs) lines.push(`station  session counter ${st.hcs.seq}, price ${st.hcs.pricePerKWhEther} ETH/kWh`);
  const c = st.charger;
  if (c && c.kind !== 'none' && c.kind !== 'sim-control') {
    const state = c.error
      ? `NOT READABLE (${c.error})`
      : c.connected === false
        ? 'NOT CONNECTED'
        : `${c.status ?? '?'} (${c.raw ?? ''})`;
    const failsafe = c.failsafe?.configured ? `failsafe ${c.failsafe.worstCaseS ?? '?'} s` : 'NO FAILSAFE';
    lines.push(`charger  ${c.kind}: ${state}, ${failsafe}`);
  }
  if (st.edge?.bills) {
    const bills = Object.entries(st.edge.bills).map(([k, v]) => `${v} ${k}`);
    lines.push(`bills    ${bills.length ? bills.join(', ') : 'none'}`);
  }
  lines.push(
    st.sessions.length
      ? `sessions ${st.sessions.map((x) => `#${x.id} ${x.state}${x.peer ? ` with ${x.peer}` : ''}${progress(x)}`).join('; ')}`
      : 'sessions none in progress',
  );
  if (st.clock?.jumps)
    lines.push(`clock    stepped ${st.clock.jumps} time(s), ${st.clock.totalJumpMs} ms in all`);
  return lines.join('\n');
}

/**
 * `POST /<action>` on the control port with the token of the agent's data directory
 * (<dataDir>/control.token, mode 0600: run as the agent's user); the agent's answer, or an Error
 * with the agent's own words.
 */
export async function postControl(
  ep: ControlEndpoint,
  token: string,
  action: string,
  body: Record<string, unknown>,
  timeoutMs = 10_000,
): Promise<unknown> {
  const url = `http://${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}/${action}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    throw new Error(
      `no agent answers on ${ep.host}:${ep.port} (${cause?.code ?? (err as Error).name}): is it running?`,
    );
  }
  const answer = (await res.json().catch(() => ({}))) as { error?: string };
  if (!res.ok) throw new Error(`${action}: ${answer.error ?? `HTTP ${res.status}`}`);
  return answer;
}
