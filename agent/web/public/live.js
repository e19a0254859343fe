// The device's live state, pushed by the agent as server-sent events (GET api/live): no polling.
// EventSource reconnects by itself (the server asks for 2 s); the page says when the stream is away.

let source;

/** Opens the stream (once); `onDevices(devices)` on every change, `onStatus(text)` on (dis)connects. */
export function openLive(onDevices, onStatus) {
  if (source && source.readyState !== EventSource.CLOSED) return source;
  source = new EventSource('api/live');
  source.addEventListener('device', (e) => {
    const { devices } = JSON.parse(e.data);
    onDevices(devices);
  });
  source.addEventListener('open', () => onStatus('Live: updates arrive as the device changes.'));
  source.addEventListener('error', () => onStatus('The live connection is away; reconnecting…'));
  return source;
}

export function closeLive() {
  source?.close();
  source = undefined;
}
