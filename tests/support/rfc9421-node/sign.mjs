// Test peer: signs one request with the npm `http-message-signatures`
// library (RFC 9421, hmac-sha256), as a Node client team would, and prints
// the headers to send. The end-to-end tests send them through Envoy.
//
// Usage: node sign.mjs < spec.json   with
//   {"secret", "keyid", "method", "url", "headers": {..}, "body": str|null,
//    "created": unix, "nonce": str|null, "tag": str, "components": [..]|null}
// Prints {"headers": [[name, value], ...]}.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pkg from 'http-message-signatures';

const { httpbis, createSigner } = pkg;
const spec = JSON.parse(readFileSync(0, 'utf8'));
const headers = { ...(spec.headers ?? {}) };
const body = spec.body ?? null;
if (body !== null) {
  // The library leaves Content-Digest (RFC 9530) to the caller.
  headers['content-digest'] = `sha-256=:${createHash('sha256').update(body).digest('base64')}:`;
}
const fields = spec.components ?? [
  '@method', '@authority', '@path', '@query',
  ...(body !== null ? ['content-digest'] : []),
  ...Object.keys(spec.headers ?? {}),
];
const params = ['created', 'keyid', 'alg', 'tag', ...(spec.nonce ? ['nonce'] : [])];
const signed = await httpbis.signMessage({
  key: createSigner(Buffer.from(spec.secret, 'utf8'), 'hmac-sha256', spec.keyid),
  name: 'sig1',
  fields,
  params,
  paramValues: {
    created: new Date(spec.created * 1000),
    tag: spec.tag,
    ...(spec.nonce ? { nonce: spec.nonce } : {}),
  },
}, { method: spec.method, url: spec.url, headers });
console.log(JSON.stringify({ headers: Object.entries(signed.headers) }));
