#!/usr/bin/env python3
"""Test peer: signs one request with the PyPI `http-message-signatures`
library (RFC 9421, hmac-sha256), as a Python client team would, and prints
the headers to send. The end-to-end tests send them through Envoy.

The part between the `cookbook` markers is what docs/clients.md shows
(a test checks the two are the same text); the rest is the harness.

Usage: rfc9421_client.py < spec.json   with
  {"secret", "keyid", "method", "url", "headers": {..}, "body": str|null,
   "created": unix, "nonce": str|null, "tag": str}
Prints {"headers": [[name, value], ...]}.
"""

import json
import sys

# cookbook:start python
import datetime
import hashlib
import os
import secrets

from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms


class EdgeKey(HTTPSignatureKeyResolver):
    """The edge's key: AWSCURRENT's hmac_secret, from the environment. Its
    keyid is its fingerprint (first 8 hex of SHA-256), so a rotation needs
    no client change beyond the new key."""

    def __init__(self):
        self.key = os.environ["EDGE_HMAC_KEY"].encode()
        self.keyid = hashlib.sha256(self.key).hexdigest()[:8]

    def resolve_private_key(self, key_id):
        return self.key


def sign(request, environment, body=None, nonce=None, created=None, key=None):
    """Adds Signature-Input and Signature (and Content-Digest for a body) to
    `request`: an object with .method, .url (absolute, no default port) and
    .headers (a dict; every header in it is covered)."""
    key = key or EdgeKey()
    HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=key).sign(
        request,
        key_id=key.keyid,
        created=created or datetime.datetime.now(datetime.timezone.utc),
        nonce=nonce or secrets.token_hex(16),
        label="sig1",
        tag=environment,
        covered_component_ids=["@method", "@authority", "@path", "@query", *request.headers],
        # With a body the library adds Content-Digest (RFC 9530) and covers it.
        body=body,
    )
# cookbook:end python


class Request:
    """The message interface the library reads: method, absolute URL, headers."""

    def __init__(self, method, url, headers):
        self.method, self.url, self.headers = method, url, headers


class ClaimedKey(EdgeKey):
    """The harness's override: the key from the spec, and a keyid the spec
    may set to another key's (the "unknown keyid" case)."""

    def __init__(self, keyid):
        super().__init__()
        self.keyid = keyid or self.keyid


def main():
    spec = json.load(sys.stdin)
    os.environ["EDGE_HMAC_KEY"] = spec["secret"]
    request = Request(spec["method"], spec["url"], dict(spec.get("headers") or {}))
    body = spec.get("body")
    sign(
        request,
        spec["tag"],
        body=body.encode() if body is not None else None,
        nonce=spec.get("nonce"),
        created=datetime.datetime.fromtimestamp(spec["created"], tz=datetime.timezone.utc),
        key=ClaimedKey(spec.get("keyid")),
    )
    print(json.dumps({"headers": list(request.headers.items())}))


if __name__ == "__main__":
    main()
