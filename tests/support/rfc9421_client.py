#!/usr/bin/env python3
"""Test peer: signs one request with the PyPI `http-message-signatures`
library (RFC 9421, hmac-sha256), as a Python client team would, and prints
the headers to send. The end-to-end tests send them through Envoy.

Usage: rfc9421_client.py < spec.json   with
  {"secret", "keyid", "method", "url", "headers": {..}, "body": str|null,
   "created": unix, "nonce": str|null, "tag": str, "components": [..]|null}
Prints {"headers": [[name, value], ...]}.
"""

import datetime
import json
import sys

from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms


class Keys(HTTPSignatureKeyResolver):
    def __init__(self, keyid, secret):
        self.keyid, self.secret = keyid, secret

    def resolve_private_key(self, key_id):
        if key_id != self.keyid:
            raise KeyError(key_id)
        return self.secret


class Request:
    """The message interface the library reads: method, absolute URL, headers."""

    def __init__(self, method, url, headers):
        self.method, self.url, self.headers = method, url, headers


def main():
    spec = json.load(sys.stdin)
    headers = dict(spec.get("headers") or {})
    body = spec.get("body")
    components = spec.get("components") or ["@method", "@authority", "@path", "@query", *headers]
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.HMAC_SHA256,
        key_resolver=Keys(spec["keyid"], spec["secret"].encode()),
    )
    request = Request(spec["method"], spec["url"], headers)
    signer.sign(
        request,
        key_id=spec["keyid"],
        created=datetime.datetime.fromtimestamp(spec["created"], tz=datetime.timezone.utc),
        nonce=spec.get("nonce"),
        label="sig1",
        tag=spec["tag"],
        covered_component_ids=components,
        # With a body the library adds Content-Digest (RFC 9530) and covers it.
        body=body.encode() if body is not None else None,
    )
    print(json.dumps({"headers": list(request.headers.items())}))


if __name__ == "__main__":
    main()
