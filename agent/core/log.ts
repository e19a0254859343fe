/**
 * Logs as JSON lines (pino) for journald and log shippers; human-readable when stdout is a
 * terminal. Secrets never reach a log: keys and passwords are redacted by path as well.
 */
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(opts: { level?: string; name?: string; pretty?: boolean } = {}): Logger {
  const pretty = opts.pretty ?? (process.stdout.isTTY && !process.env.CI);
  return pino({
    level: opts.level ?? 'info',
    base: opts.name ? { agent: opts.name } : {},
    redact: { paths: ['privateKey', '*.privateKey', 'password', '*.password'], censor: '[redacted]' },
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss' } } }
      : {}),
  });
}
