// Test peer: signs one request with the npm `http-message-signatures`
// library (RFC 9421, hmac-sha256), as a Node client team would, and prints
// the headers to send. The end-to-end tests send them through Envoy.
//
// The part between the `cookbook` markers is what docs/clients.md shows
// (a test checks the two are the same text); the rest is the harness.
//
// Usage: node sign.mjs < spec.json   with
//   {"secret", "keyid", "method", "url", "headers": {..}, "body": str|null,
//    "created": unix, "nonce": str|null, "tag": str}
// Prints {"headers": [[name, value], ...]}.
import { readFileSync } from 'node:fs';

// cookbook:start node
import { createHash, randomBytes } from 'node:crypto';
import pkg from 'http-message-signatures';

const { httpbis, createSigner } = pkg;

// The edge's key: AWSCURRENT's hmac_secret, from the environment. Its keyid
// is its fingerprint (first 8 hex of SHA-256), so a rotation needs no client
// change beyond the new key.
export function edgeKey() {
  const key = Buffer.from(process.env.EDGE_HMAC_KEY, 'utf8');
  return { key, keyid: createHash('sha256').update(key).digest('hex').slice(0, 8) };
}

// Signs `request` ({method, url: absolute, no default port, headers: every
// one covered}); returns it with Signature-Input, Signature and, for a
// body, Content-Digest (RFC 9530, which the library leaves to the caller).
export async function sign(request, environment, { body = null, nonce, created, key = edgeKey() } = {}) {
  const headers = { ...request.headers };
  const fields = ['@method', '@authority', '@path', '@query', ...Object.keys(request.headers)];
  if (body !== null) {
    headers['content-digest'] = `sha-256=:${createHash('sha256').update(body).digest('base64')}:`;
    fields.push('content-digest');
  }
  return httpbis.signMessage({
    key: createSigner(key.key, 'hmac-sha256', key.keyid),
    name: 'sig1',
    fields,
    params: ['created', 'keyid', 'alg', 'tag', 'nonce'],
    paramValues: {
      created: created ?? new Date(),
      tag: environment,
      nonce: nonce ?? randomBytes(16).toString('hex'),
    },
  }, { ...request, headers });
}
// cookbook:end node

const spec = JSON.parse(readFileSync(0, 'utf8'));
process.env.EDGE_HMAC_KEY = spec.secret;
const key = edgeKey();
// The harness's override: a keyid the spec may set to another key's (the
// "unknown keyid" case).
key.keyid = spec.keyid ?? key.keyid;
const signed = await sign(
  { method: spec.method, url: spec.url, headers: spec.headers ?? {} },
  spec.tag,
  {
    body: spec.body ?? null,
    nonce: spec.nonce ?? undefined,
    created: new Date(spec.created * 1000),
    key,
  },
);
console.log(JSON.stringify({ headers: Object.entries(signed.headers) }));
