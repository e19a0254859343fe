/**
 * The members' page inside a running agent: the control port hands it the GET requests it does
 * not know, and `web.port` (the edge's public page) serves it alone. The indexer starts on the
 * first request, so an agent whose page nobody opens spends nothing on it.
 */
import { join } from 'node:path';
import { connectRpc } from '../../contracts/rpc.js';
import type { Chain } from '../core/chain.js';
import type { AgentConfig } from '../core/config.js';
import type { Logger } from '../core/log.js';
import type { Metering } from '../core/metering.js';
import type { SessionRecord } from '../core/session.js';
import { deviceState, PowerEstimator } from './device.js';
import { ChainIndexer } from './indexer.js';
import { createWebApp, type WebHandler } from './server.js';

export { serveWeb } from './server.js';

export interface AgentWeb {
  handle: WebHandler;
  close(): void;
}

/** What the page needs of a running agent (the runtime hands itself over). */
export interface WebHost {
  readonly cfg: AgentConfig;
  readonly log: Logger;
  readonly chain: Pick<Chain, 'deployment'>;
  readonly sessions: ReadonlyMap<string, SessionRecord>;
  /** The meter, for its power register while a charge runs (none on an edge). */
  readonly metering?: Pick<Metering, 'powerW'>;
  status(): Record<string, unknown>;
}

export function agentWeb(agent: WebHost): AgentWeb {
  const power = new PowerEstimator();
  let app: Promise<ReturnType<typeof createWebApp>> | undefined;
  let closed = false;
  const start = async () => {
    // Its own provider: the page's reads never queue behind the agent's transactions.
    const { provider } = await connectRpc(agent.cfg.chain.rpcUrl);
    const indexer = new ChainIndexer({
      provider,
      deployment: agent.chain.deployment,
      confirmations: agent.cfg.chain.confirmations,
      // Final rows on disk, read back per member: the page's memory stays flat for years.
      dir: join(agent.cfg.dataDir, 'page-index'),
      onError: (err) => agent.log.warn({ err: err.message }, 'page indexer'),
    });
    const charging = () => [...agent.sessions.values()].some((s) => s.state === 'charging');
    const ev = agent.cfg.ev;
    const web = createWebApp({
      indexer,
      devices: async () => {
        // The meter's own power register while a charge runs (one more Modbus read a second,
        // only while the page is open or a charge is traced).
        const meterPowerW = agent.metering && charging() ? await agent.metering.powerW() : undefined;
        return [deviceState(agent.status(), [...agent.sessions.values()], power, meterPowerW)];
      },
      busy: charging,
      ...(agent.cfg.web?.tiles ? { tiles: agent.cfg.web.tiles } : {}),
      ...(agent.cfg.web?.tileAttribution ? { tileAttribution: agent.cfg.web.tileAttribution } : {}),
      ...(agent.cfg.role === 'ev' && ev?.latitude !== undefined && ev.longitude !== undefined
        ? { ev: { latitude: ev.latitude, longitude: ev.longitude, radiusM: ev.searchRadiusM ?? 10_000 } }
        : {}),
    });
    return {
      handle: web.handle,
      close: () => {
        web.close();
        provider.destroy();
      },
    };
  };
  return {
    handle: async (req, res, ctx) => {
      if (closed || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
      app ??= start();
      return (await app).handle(req, res, ctx);
    },
    close: () => {
      closed = true;
      void app?.then((a) => a.close()).catch(() => {});
    },
  };
}
