#!/usr/bin/env python3
"""Independent check of the CRAWBL-HMAC-SHA256-V1 spec vectors.

Written from docs/signature-v1.md alone, with the Python standard library
(hmac, hashlib, base64), so the committed vectors are confirmed by a second
implementation and not only by the Rust code that produced them.

Usage: python3 tests/vectors/check_vectors.py [docs/signature-v1-vectors.json]
Prints one line per failing case and ends with "N passed, M failed".
"""

import base64
import binascii
import hashlib
import hmac
import json
import re
import sys
from pathlib import Path

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
NONCE_RE = re.compile(r"[A-Za-z0-9._~-]{16,128}")
TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
HEX64_RE = re.compile(r"[0-9A-Fa-f]{64}")
B64_RE = re.compile(r"[A-Za-z0-9+/]{43}=")


class Reject(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


def header_values(headers, name):
    return [v for (n, v) in headers if n.lower() == name]


def decode_tag(value):
    if not value.startswith("v1="):
        raise Reject("malformed_signature")
    enc = value[3:]
    if HEX64_RE.fullmatch(enc):
        return bytes.fromhex(enc)
    if B64_RE.fullmatch(enc):
        try:
            raw = base64.b64decode(enc, validate=True)
        except binascii.Error:
            raise Reject("malformed_signature")
        # Canonical encoding only: re-encoding must give the same text.
        if len(raw) != 32 or base64.b64encode(raw).decode() != enc:
            raise Reject("malformed_signature")
        return raw
    raise Reject("malformed_signature")


def verify(case):
    """Returns (outcome, key, string_to_sign or None)."""
    v = case["verifier"]
    r = case["request"]
    headers = [(n, val) for n, val in r["headers"]]
    sts = None
    try:
        sig = header_values(headers, "x-crawbl-signature")
        ts = header_values(headers, "x-crawbl-timestamp")
        nonce = header_values(headers, "x-crawbl-nonce")
        content = header_values(headers, "x-crawbl-content-sha256")
        # A v1 signature to a verifier that does not accept v1.
        if "v1" not in v.get("formats", ["v1"]):
            if sig:
                raise Reject("unsupported_format")
            raise Reject("missing_signature")
        # 1. missing_signature
        if not sig or not ts or (v["require_nonce"] and not nonce):
            raise Reject("missing_signature")
        # 2. malformed_signature
        if any(len(h) > 1 for h in (sig, ts, nonce, content)):
            raise Reject("malformed_signature")
        ts, sig = ts[0], sig[0]
        nonce = nonce[0] if nonce else None
        content = content[0] if content else None
        if not TIMESTAMP_RE.fullmatch(ts):
            raise Reject("malformed_signature")
        if nonce is not None and not NONCE_RE.fullmatch(nonce):
            raise Reject("malformed_signature")
        unsigned = content == UNSIGNED_PAYLOAD
        if content is not None and not unsigned and not HEX64_RE.fullmatch(content):
            raise Reject("malformed_signature")
        tag = decode_tag(sig)
        if unsigned:
            signed_hash = UNSIGNED_PAYLOAD
        else:
            signed_hash = content.lower() if content is not None else EMPTY_SHA256
        sts = "\n".join(
            [
                "CRAWBL-HMAC-SHA256-V1",
                v["environment"],
                ts,
                nonce or "",
                r["method"],
                r["authority"].encode().lower().decode(),  # ASCII-only lowercase
                r["path"],
                signed_hash,
            ]
        )
        # Still step 2, once the string to sign is known (it is shown for
        # debugging): UNSIGNED-PAYLOAD only on unsigned_payload_paths.
        if unsigned and not v.get("unsigned_payload_allowed", False):
            raise Reject("malformed_signature")
        # 3. stale_timestamp
        if abs(int(ts) - v["now"]) > v["clock_skew_seconds"]:
            raise Reject("stale_timestamp")
        # 4. invalid_signature
        key = None
        for name, secret in (("current", v["secret"]), ("previous", v["previous_secret"])):
            if secret:
                expected = hmac.new(secret.encode(), sts.encode(), hashlib.sha256).digest()
                if hmac.compare_digest(expected, tag):
                    key = name
                    break
        if key is None:
            raise Reject("invalid_signature")
        # 5. replayed_request
        if nonce is not None and nonce in v["seen_nonces"]:
            raise Reject("replayed_request")
        # UNSIGNED-PAYLOAD: the body is neither limited nor checked.
        if unsigned:
            return "ok", key, sts
        # 7 before 6 when the size is known: the body must fit the limit.
        if "body_base64" in r:
            body = base64.b64decode(r["body_base64"])
        else:
            body = r.get("body", "").encode()
        if len(body) > v["max_body_bytes"]:
            raise Reject("body_too_large")
        # 6. content_mismatch
        if hashlib.sha256(body).hexdigest() != signed_hash:
            raise Reject("content_mismatch")
        return "ok", key, sts
    except Reject as rej:
        return rej.code, None, sts


def main():
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[2] / "docs/signature-v1-vectors.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    passed = failed = 0
    for case in doc["cases"]:
        outcome, key, sts = verify(case)
        exp = case["expected"]
        problems = []
        if outcome != exp["outcome"]:
            problems.append(f"outcome {outcome}, expected {exp['outcome']}")
        if key != exp.get("key"):
            problems.append(f"key {key}, expected {exp.get('key')}")
        if sts != exp.get("string_to_sign"):
            problems.append("string to sign differs")
        if problems:
            failed += 1
            print(f"FAIL {case['name']}: {'; '.join(problems)}")
        else:
            passed += 1
    print(f"vectors: {passed} passed, {failed} failed")
    return 1 if failed or passed < 30 else 0


if __name__ == "__main__":
    sys.exit(main())
