/**
 * A relay or contactor on a GPIO line, through libgpiod's character device (/dev/gpiochipN; the
 * sysfs GPIO interface is retired). Debian's `gpiod` package provides `gpioset`/`gpioget`; a
 * line keeps its value only while the process that requested it holds it, so the relay's state is
 * a held `gpioset` process (v1: --mode=signal; v2 holds by default). The holder runs under a small
 * `sh` that also reads the agent's pipe: when the agent dies, however it dies (SIGKILL, OOM, with
 * or without systemd), the pipe closes, the shell ends gpioset, the line is released and the
 * relay's driver (active high: pulled low) drops out: off is the state without us.
 *
 * The DIY station: the relay has no idea of plug or car, so its status is charging (on) or
 * plugged (off); the billing meter is separate.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  type Charger,
  ChargerError,
  type ChargerIdentity,
  type ChargerState,
  type FailsafeInfo,
  type SignedMeterValue,
} from './types.js';

export interface GpioOptions {
  chip: string;
  line: number;
  activeLow?: boolean;
}

/** The libgpiod tools' major version decides their syntax. */
export type GpiodVersion = 1 | 2;

/** Arguments of `gpioset` holding the line at `on` (pure: unit-tested). */
export function gpiosetArgs(v: GpiodVersion, o: GpioOptions, on: boolean): string[] {
  const value = `${o.line}=${on ? 1 : 0}`;
  return v === 1
    ? ['--mode=signal', ...(o.activeLow ? ['--active-low'] : []), o.chip, value]
    : ['--chip', o.chip, ...(o.activeLow ? ['--active-low'] : []), value];
}

export function gpiogetArgs(v: GpiodVersion, o: GpioOptions): string[] {
  return v === 1
    ? [...(o.activeLow ? ['--active-low'] : []), o.chip, String(o.line)]
    : ['--chip', o.chip, ...(o.activeLow ? ['--active-low'] : []), '--numeric', String(o.line)];
}

/** "gpioset (libgpiod) v1.6.3" → 1; "gpioset (libgpiod) v2.1" → 2. */
export function parseGpiodVersion(text: string): GpiodVersion {
  const m = /v(\d+)\./.exec(text);
  if (!m)
    throw new ChargerError(
      'config',
      `cannot read the libgpiod version from "${text.trim()}"`,
      'apt-get install gpiod',
    );
  return Number(m[1]) >= 2 ? 2 : 1;
}

export interface ProcessRunner {
  run(cmd: string, args: string[]): Promise<string>;
  hold(cmd: string, args: string[]): ChildProcess;
}

/**
 * `sh` holding gpioset for as long as its stdin (a pipe from the agent) is open: EOF — the agent
 * ended it, or died — kills gpioset; the shell exits when gpioset does (also when it fails at once).
 */
// (A background job's stdin is /dev/null in a non-interactive shell: the pipe is passed as fd 3.)
export const HOLDER_SCRIPT =
  'exec 3<&0; gpioset "$@" & p=$!; (read -r _ <&3; kill "$p" 2>/dev/null) & wait "$p"';

const systemRunner: ProcessRunner = {
  run: (cmd, args) =>
    new Promise((resolve, reject) =>
      execFile(cmd, args, { timeout: 5_000 }, (err, stdout, stderr) =>
        err
          ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`))
          : resolve(stdout),
      ),
    ),
  hold: (cmd, args) =>
    spawn('sh', ['-c', HOLDER_SCRIPT.replace('gpioset', cmd), 'sh', ...args], {
      stdio: ['pipe', 'ignore', 'pipe'],
    }),
};

export class GpioRelayCharger implements Charger {
  readonly kind = 'gpio' as const;
  private version?: GpiodVersion;
  private holder?: ChildProcess;
  private on = false;
  private limitA?: number;

  constructor(
    readonly opts: GpioOptions,
    private readonly runner: ProcessRunner = systemRunner,
  ) {}

  async open(): Promise<void> {
    const text = await this.runner.run('gpioset', ['--version']).catch((err: Error) => {
      throw new ChargerError('config', `gpioset is not available (${err.message})`, 'apt-get install gpiod');
    });
    this.version = parseGpiodVersion(text);
    // Off until a session says otherwise.
    await this.set(false);
  }

  connected(): boolean {
    return this.holder !== undefined && this.holder.exitCode === null;
  }

  private async set(on: boolean): Promise<void> {
    if (!this.version) throw new ChargerError('config', 'relay not open', 'call open() first');
    const previous = this.holder;
    this.holder = undefined;
    if (previous) await release(previous);
    const child = this.runner.hold('gpioset', gpiosetArgs(this.version, this.opts, on));
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    // A holder that dies at once (busy line, no permission) is an error, not a switched relay.
    const failed = await new Promise<string | undefined>((resolve) => {
      const t = setTimeout(() => resolve(undefined), 200);
      child.once('exit', (code) => {
        clearTimeout(t);
        resolve(`gpioset exited with ${code}: ${stderr.trim()}`);
      });
      child.once('error', (err) => {
        clearTimeout(t);
        resolve(err.message);
      });
    });
    if (failed)
      throw new ChargerError(
        'io',
        `cannot set ${this.opts.chip} line ${this.opts.line} (${failed})`,
        'check the chip and line (gpioinfo), that no other program holds the line, and that the agent may open /dev/gpiochip*',
      );
    this.holder = child;
    this.on = on;
  }

  async identity(): Promise<ChargerIdentity> {
    return {
      vendor: 'GPIO relay',
      model: `${this.opts.chip} line ${this.opts.line}${this.opts.activeLow ? ' (active low)' : ''}`,
    };
  }

  async state(): Promise<ChargerState> {
    return {
      status: this.on ? 'charging' : 'plugged',
      raw: this.on ? 'relay on' : 'relay off',
      enabled: this.on,
      ...(this.limitA !== undefined ? { currentLimitA: this.limitA } : {}),
      at: Date.now(),
    };
  }

  async enable(currentA: number, _sessionId: string): Promise<void> {
    this.limitA = currentA;
    await this.set(true);
  }

  async disable(): Promise<void> {
    if (this.version) await this.set(false);
  }

  /** A relay only switches; the current is the installation's. */
  async setCurrent(currentA: number): Promise<void> {
    this.limitA = currentA;
  }

  async keepAlive(): Promise<void> {
    if (this.holder && this.holder.exitCode !== null) await this.set(this.on);
  }

  signedValues(_sessionId: string): SignedMeterValue[] {
    return [];
  }

  failsafe(): FailsafeInfo {
    return {
      configured: true,
      worstCaseS: 0,
      detail:
        "the line is held by gpioset under a shell reading the agent's pipe: when the agent dies (any way, with or without systemd) the pipe closes, gpioset ends and the line is released (relay off, if wired to drop out unpowered)",
    };
  }

  async close(): Promise<void> {
    if (this.version && this.on) await this.set(false).catch(() => {});
    if (this.holder) await release(this.holder);
    this.holder = undefined;
  }
}

/** Ends a holder: its pipe closed (the shell then ends gpioset), a signal if it does not go. */
async function release(holder: ChildProcess): Promise<void> {
  if ((holder.exitCode ?? null) !== null || (holder.signalCode ?? null) !== null) return;
  const gone = new Promise((r) => holder.once('exit', r));
  if (holder.stdin) holder.stdin.end();
  else holder.kill('SIGTERM');
  const timer = setTimeout(() => holder.kill('SIGKILL'), 2_000);
  await gone;
  clearTimeout(timer);
}
