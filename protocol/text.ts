/** Text for the protocol's fixed-size text fields, whose limits are UTF-8 bytes, not characters. */

const utf8 = new TextEncoder();

/** The longest start of `text` that fits `maxBytes` of UTF-8, never cutting a character in two. */
export function fitUtf8(text: string, maxBytes: number): string {
  let out = '';
  let bytes = 0;
  for (const ch of text) {
    const n = utf8.encode(ch).length;
    if (bytes + n > maxBytes) break;
    out += ch;
    bytes += n;
  }
  return out;
}
