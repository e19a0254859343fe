/**
 * A pair of connected pseudo-terminals made by `socat`, standing in for an RS-485 line in tests:
 * the driver opens `master`, the simulated meter opens `slave`, and bytes written on one end come
 * out of the other. `unplug()` / `replug()` make both device paths vanish and come back under the
 * same names, the way a USB RS-485 adapter does when it is pulled out and plugged in again.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PtyPair {
  /** Path for the Modbus master (the driver under test). */
  readonly master: string;
  /** Path for the Modbus slave (the simulated meter). */
  readonly slave: string;
  /** Kills socat: both paths disappear, open file descriptors get EIO, as when a USB adapter is pulled. */
  unplug(): Promise<void>;
  /** Starts socat again with the same link names. */
  replug(): Promise<void>;
  close(): Promise<void>;
}

const LINK_WAIT_MS = 5_000;

export async function openPtyPair(): Promise<PtyPair> {
  const dir = mkdtempSync(join(tmpdir(), 'p2pev-pty-'));
  const master = join(dir, 'master');
  const slave = join(dir, 'slave');
  let child: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    // raw,echo=0: a byte pipe, no line discipline; the links give stable names across replugs.
    child = spawn('socat', [`pty,raw,echo=0,link=${master}`, `pty,raw,echo=0,link=${slave}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const spawned = child;
    const failed = new Promise<never>((_, reject) => {
      spawned.once('error', (err) =>
        reject(new Error(`socat could not start (${err.message}): apt-get install socat`)),
      );
      spawned.once('exit', (code) => reject(new Error(`socat exited with ${code}: ${stderr.trim()}`)));
    });
    failed.catch(() => {});
    const deadline = Date.now() + LINK_WAIT_MS;
    while (!(existsSync(master) && existsSync(slave))) {
      if (Date.now() > deadline) throw new Error(`socat made no pty links in ${LINK_WAIT_MS} ms: ${stderr}`);
      await Promise.race([failed, new Promise((r) => setTimeout(r, 10))]);
    }
  };

  const stop = async (): Promise<void> => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
    running.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 2_000))]);
    if (running.exitCode === null && running.signalCode === null) running.kill('SIGKILL');
    // socat removes its links on a clean exit; make sure they are gone after a kill too.
    rmSync(master, { force: true });
    rmSync(slave, { force: true });
  };

  await start();
  return {
    master,
    slave,
    unplug: stop,
    replug: start,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
