/**
 * An OCPP-J 1.6 charge point written from the specification ("OCPP-J 1.6 Specification", §3-4),
 * not from the server's library: a WebSocket with subprotocol "ocpp1.6" to <url>/<id>, CALL
 * [2, id, action, payload], CALLRESULT [3, id, payload], CALLERROR [4, id, code, description,
 * details]. Tests drive it message by message.
 */
import WebSocket from 'ws';

type Frame = [number, string, ...unknown[]];

export class RawChargePoint {
  private readonly frames: Frame[] = [];
  private waiters: (() => void)[] = [];
  private next = 1;
  autoTrigger = true;
  /** The messages the central system asked for with TriggerMessage. */
  readonly triggered: string[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const f = JSON.parse(data.toString()) as Frame;
      // TriggerMessage is answered at once (the central system sends it on every connect).
      if (this.autoTrigger && f[0] === 2 && f[2] === 'TriggerMessage') {
        this.triggered.push((f[3] as { requestedMessage: string }).requestedMessage);
        this.reply(f[1], { status: 'Accepted' });
        return;
      }
      this.frames.push(f);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Connects; rejects with the HTTP status when the central system refuses the upgrade. */
  static connect(url: string, id: string, password?: string): Promise<RawChargePoint> {
    const headers: Record<string, string> = {};
    if (password !== undefined)
      headers.authorization = `Basic ${Buffer.from(`${id}:${password}`).toString('base64')}`;
    const ws = new WebSocket(`${url}/${encodeURIComponent(id)}`, ['ocpp1.6'], { headers });
    return new Promise((resolve, reject) => {
      ws.once('open', () => {
        if (ws.protocol !== 'ocpp1.6') reject(new Error(`subprotocol ${ws.protocol}`));
        else resolve(new RawChargePoint(ws));
      });
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  private async take(match: (f: Frame) => boolean, what: string, timeoutMs = 10_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex(match);
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      if (Date.now() > deadline)
        throw new Error(`no ${what} within ${timeoutMs} ms; got ${JSON.stringify(this.frames)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 100);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Sends a CALL and returns the CALLRESULT payload, or throws with the CALLERROR code. */
  async call(action: string, payload: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = `m${this.next++}`;
    this.ws.send(JSON.stringify([2, id, action, payload]));
    const f = await this.take((x) => (x[0] === 3 || x[0] === 4) && x[1] === id, `answer to ${action}`);
    if (f[0] === 4)
      throw Object.assign(new Error(`CALLERROR ${String(f[2])}: ${String(f[3])}`), { code: f[2] });
    return f[2] as Record<string, unknown>;
  }

  /** Waits for a CALL of `action` from the central system; returns its id and payload. */
  async expectCall(action: string): Promise<{ id: string; payload: Record<string, unknown> }> {
    const f = await this.take((x) => x[0] === 2 && x[2] === action, `${action} call`);
    return { id: f[1], payload: f[3] as Record<string, unknown> };
  }

  reply(id: string, payload: Record<string, unknown>): void {
    this.ws.send(JSON.stringify([3, id, payload]));
  }

  /** Answers every call of `action` still queued or arriving with `payload` (TriggerMessage etc.). */
  async answer(action: string, payload: Record<string, unknown>): Promise<Record<string, unknown>> {
    const c = await this.expectCall(action);
    this.reply(c.id, payload);
    return c.payload;
  }

  close(): void {
    this.ws.terminate();
  }
}
