/**
 * Logs as JSON lines (pino) for journald and log shippers; human-readable when stdout is a
 * terminal and pino-pretty is installed (a development dependency: an installed device has none,
 * and logs JSON in a terminal too). Secrets never reach a log: keys and passwords are redacted by
 * path as well.
 *
 * When stdout is journald's stream (JOURNAL_STREAM names its device and inode, as systemd's
 * docs say to check: a child whose stdout is a pipe inherits the variable) every line starts with its syslog
 * priority, `<3>` for an error: journald strips the prefix and files the line at that priority
 * (SyslogLevelPrefix=, on by default), so `journalctl -p err` shows the errors alone.
 */
import { fstatSync } from 'node:fs';
import { createRequire } from 'node:module';
import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** pino's numeric levels → syslog priorities (RFC 5424: 2 crit, 3 err, 4 warning, 6 info, 7 debug). */
const SYSLOG_PRIORITY: Record<string, number> = { 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 };

/** The syslog priority for one pino JSON line (its level is the first field), info if unknown. */
export function priorityOf(line: string): number {
  const level = /^\{"level":(\d+)/.exec(line)?.[1];
  return (level === undefined ? undefined : SYSLOG_PRIORITY[level]) ?? 6;
}

/** A destination that writes each line behind its syslog priority prefix. */
export function journaldDestination(inner: DestinationStream): DestinationStream {
  return { write: (line: string) => inner.write(`<${priorityOf(line)}>${line}`) };
}

/** Is stdout connected to journald (systemd's StandardOutput=journal)? */
export function stdoutIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  if (!env.JOURNAL_STREAM) return false;
  try {
    const st = fstatSync(1);
    return env.JOURNAL_STREAM === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

function prettyInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}

export function createLogger(opts: { level?: string; name?: string; pretty?: boolean } = {}): Logger {
  const pretty = (opts.pretty ?? (process.stdout.isTTY && !process.env.CI)) && prettyInstalled();
  const options = {
    level: opts.level ?? 'info',
    base: opts.name ? { agent: opts.name } : {},
    redact: { paths: ['privateKey', '*.privateKey', 'password', '*.password'], censor: '[redacted]' },
  };
  if (pretty)
    return pino({
      ...options,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss' } },
    });
  const stdout = pino.destination({ dest: 1, sync: true });
  return pino(options, stdoutIsJournal() ? journaldDestination(stdout) : stdout);
}
