#!/usr/bin/env python3
"""Independent check of the RFC 9421 hmac-sha256 profile vectors.

Written from docs/signature-rfc9421.md, RFC 9421 and RFC 8941 alone, with the
Python standard library (its own small structured-field parser, hmac,
hashlib, base64), so the committed vectors are confirmed by a second
implementation and not only by the Rust code that produced them.

Usage: python3 tests/vectors/check_rfc9421_vectors.py [docs/signature-rfc9421-vectors.json]
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

NONCE_RE = re.compile(r"[A-Za-z0-9._~-]{16,128}")
FIELD_NAME_RE = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
DERIVED = {"@method", "@authority", "@path", "@query", "@scheme", "@target-uri", "@request-target"}
REQUIRED = ["@method", "@authority", "@path", "@query"]
MAX_COMPONENTS = 32


class Reject(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


class SfError(Exception):
    pass


# --- RFC 8941 parsing (the subset of §4.2 the profile's fields use) --------

class Token(str):
    pass


class SfParser:
    def __init__(self, text):
        self.s = text
        self.i = 0

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else ""

    def eat(self, ch):
        if self.peek() != ch:
            raise SfError(f"expected {ch!r} at {self.i}")
        self.i += 1

    def sp(self):
        while self.peek() == " ":
            self.i += 1

    def ows(self):
        while self.peek() in (" ", "\t") and self.peek():
            self.i += 1

    def key(self):
        c = self.peek()
        if not (c == "*" or ("a" <= c <= "z")):
            raise SfError("bad key")
        start = self.i
        while self.peek() and (self.peek().islower() or self.peek().isdigit() or self.peek() in "_-.*"):
            self.i += 1
        return self.s[start:self.i]

    def bare(self):
        c = self.peek()
        if c == "-" or c.isdigit():
            start = self.i
            if c == "-":
                self.i += 1
            digits = self.i
            while self.peek().isdigit():
                self.i += 1
            if self.peek() == ".":
                raise SfError("decimals are not used by the profile")
            if not 1 <= self.i - digits <= 15:
                raise SfError("bad integer")
            return int(self.s[start:self.i])
        if c == '"':
            self.i += 1
            out = []
            while True:
                ch = self.peek()
                if ch == "":
                    raise SfError("unterminated string")
                self.i += 1
                if ch == "\\":
                    nxt = self.peek()
                    if nxt not in ('"', "\\"):
                        raise SfError("bad escape")
                    out.append(nxt)
                    self.i += 1
                elif ch == '"':
                    return "".join(out)
                elif not (0x20 <= ord(ch) <= 0x7E):
                    raise SfError("bad string char")
                else:
                    out.append(ch)
        if c == ":":
            self.i += 1
            end = self.s.find(":", self.i)
            if end < 0:
                raise SfError("unterminated byte sequence")
            text = self.s[self.i:end]
            if not re.fullmatch(r"[A-Za-z0-9+/=]*", text):
                raise SfError("bad base64")
            self.i = end + 1
            try:
                return base64.b64decode(text, validate=True)
            except binascii.Error as e:
                raise SfError(str(e))
        if c == "?":
            self.i += 1
            v = self.peek()
            if v not in ("0", "1"):
                raise SfError("bad boolean")
            self.i += 1
            return v == "1"
        if c == "*" or c.isalpha():
            start = self.i
            while self.peek() and (self.peek().isalnum() or self.peek() in ":/!#$%&'*+-.^_`|~"):
                self.i += 1
            return Token(self.s[start:self.i])
        raise SfError(f"bad item at {self.i}")

    def params(self):
        params = {}
        while self.peek() == ";":
            self.i += 1
            self.sp()
            k = self.key()
            v = True
            if self.peek() == "=":
                self.i += 1
                v = self.bare()
            # The profile refuses a repeated key (RFC 8941 would keep the last).
            if k in params:
                raise SfError(f"repeated parameter {k}")
            params[k] = v
        return params

    def item_or_inner_list(self):
        if self.peek() == "(":
            self.i += 1
            items = []
            while True:
                self.sp()
                if self.peek() == ")":
                    self.i += 1
                    return ("list", items, self.params())
                items.append((self.bare(), self.params()))
                if self.peek() not in (" ", ")"):
                    raise SfError("bad inner list")
        return ("item", self.bare(), self.params())

    def dictionary(self):
        out = {}
        self.sp()
        if not self.peek():
            return out
        while True:
            k = self.key()
            if k in out:
                raise SfError(f"repeated member {k}")
            if self.peek() == "=":
                self.i += 1
                out[k] = self.item_or_inner_list()
            else:
                out[k] = ("item", True, self.params())
            self.ows()
            if not self.peek():
                return out
            self.eat(",")
            self.ows()
            if not self.peek():
                raise SfError("trailing comma")


def parse_dictionary(text):
    p = SfParser(text)
    d = p.dictionary()
    if p.i != len(text):
        raise SfError("trailing characters")
    return d


def ser_bare(v):
    if isinstance(v, bool):
        return "?1" if v else "?0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, bytes):
        return ":" + base64.b64encode(v).decode() + ":"
    if isinstance(v, Token):
        return str(v)
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ser_params(params):
    return "".join(";" + k if v is True else f";{k}={ser_bare(v)}" for k, v in params.items())


def ser_inner_list(items, params):
    return "(" + " ".join(ser_bare(v) + ser_params(p) for v, p in items) + ")" + ser_params(params)


# --- the profile ------------------------------------------------------------

def field_value(headers, name):
    values = [v.strip(" \t") for (n, v) in headers if n.lower() == name]
    return ", ".join(values) if values else None


def component_value(name, r):
    path, _, query = r["path"].partition("?")
    # The scheme the verifier establishes: the connection's when known
    # (a client's :scheme claim must not decide which port is dropped).
    tls = r.get("tls")
    scheme = ("https" if tls else "http") if tls is not None else r.get("scheme", "").lower()
    authority = r["authority"].lower()
    default = {"https": ":443", "http": ":80"}.get(scheme)
    if default and authority.endswith(default):
        authority = authority[: -len(default)]
    if name == "@method":
        return r["method"]
    if name == "@authority":
        return authority
    if name == "@path":
        return path or "/"
    if name == "@query":
        return "?" + query if "?" in r["path"] else "?"
    if name == "@scheme":
        if not scheme:
            raise Reject("malformed_signature")
        return scheme
    if name == "@target-uri":
        if not scheme:
            raise Reject("malformed_signature")
        return f"{scheme}://{authority}{r['path']}"
    if name == "@request-target":
        return r["path"]
    value = field_value(r["headers"], name)
    if value is None:
        raise Reject("malformed_signature")
    return value


def content_digests(value):
    try:
        d = parse_dictionary(value)
    except SfError:
        raise Reject("malformed_signature")
    out = {}
    for alg, size in (("sha-256", 32), ("sha-512", 64)):
        if alg in d:
            kind, v, _ = d[alg]
            if kind != "item" or not isinstance(v, bytes) or len(v) != size:
                raise Reject("malformed_signature")
            out[alg] = v
    if not out:
        raise Reject("malformed_signature")
    return out


def verify(case):
    """Returns (outcome, key, signature base or None)."""
    v = case["verifier"]
    r = dict(case["request"], tls=case.get("connection", {}).get("tls"))
    h = r["headers"]
    formats = v.get("formats", ["v1"])
    has_rfc = any(n.lower() in ("signature-input", "signature") for n, _ in h)
    has_v1 = any(n.lower() == "x-crawbl-signature" for n, _ in h)
    base = None
    try:
        if "rfc9421" not in formats or not has_rfc:
            # v1 is checked by check_vectors.py; these vectors carry none.
            if has_v1:
                raise RuntimeError("v1 request in the RFC 9421 vectors")
            # Signed in RFC 9421 for a verifier that only takes v1.
            if has_rfc:
                raise Reject("unsupported_format")
            raise Reject("missing_signature")
        if "v1" in formats and has_v1:
            raise Reject("malformed_signature")
        # 1. missing_signature
        inputs = [x for n, x in h if n.lower() == "signature-input"]
        sigs = [x for n, x in h if n.lower() == "signature"]
        if not inputs or not sigs:
            raise Reject("missing_signature")
        # 2. malformed_signature
        if len(inputs) > 1 or len(sigs) > 1:
            raise Reject("malformed_signature")
        try:
            din = parse_dictionary(inputs[0])
            dsig = parse_dictionary(sigs[0])
        except SfError:
            raise Reject("malformed_signature")
        if len(din) != 1 or len(dsig) != 1:
            raise Reject("malformed_signature")
        (label, member), = din.items()
        if label not in dsig or member[0] != "list":
            raise Reject("malformed_signature")
        skind, sval, _ = dsig[label]
        if skind != "item" or not isinstance(sval, bytes) or len(sval) != 32:
            raise Reject("malformed_signature")
        _, items, params = member
        if len(items) > MAX_COMPONENTS:
            raise Reject("malformed_signature")
        names = []
        for value, p in items:
            if not isinstance(value, str) or isinstance(value, Token) or p:
                raise Reject("malformed_signature")
            if value not in DERIVED and not FIELD_NAME_RE.fullmatch(value):
                raise Reject("malformed_signature")
            if value in names:
                raise Reject("malformed_signature")
            names.append(value)
        for req in REQUIRED:
            if req not in names:
                raise Reject("malformed_signature")

        def param(name, kind, required):
            if name not in params:
                if required:
                    raise Reject("malformed_signature")
                return None
            val = params[name]
            ok = (isinstance(val, int) and not isinstance(val, bool) and val >= 0) if kind == "int" else (
                isinstance(val, str) and not isinstance(val, Token))
            if not ok:
                raise Reject("malformed_signature")
            return val

        created = param("created", "int", True)
        expires = param("expires", "int", False)
        keyid = param("keyid", "str", True)
        tag = param("tag", "str", True)
        alg = param("alg", "str", False)
        if alg is not None and alg != "hmac-sha256":
            raise Reject("malformed_signature")
        nonce = param("nonce", "str", False)
        if nonce is not None and not NONCE_RE.fullmatch(nonce):
            raise Reject("malformed_signature")
        if nonce is None and v["require_nonce"]:
            raise Reject("missing_signature")
        if "content-digest" in names:
            cd = field_value(h, "content-digest")
            if cd is None:
                raise Reject("malformed_signature")
            digests = content_digests(cd)
        elif v.get("unsigned_payload_allowed"):
            digests = None
        else:
            digests = {"sha-256": hashlib.sha256(b"").digest()}
        lines = [f'"{n}": {component_value(n, r)}' for n in names]
        lines.append('"@signature-params": ' + ser_inner_list(items, params))
        # The base is shown as on an unsigned-payload path (what
        # `edge-hmac verify` prints), even when the next rule refuses it.
        base = "\n".join(lines)
        if "content-digest" not in names and not v.get("unsigned_payload_allowed"):
            lengths = [x for n, x in h if n.lower() == "content-length"]
            if len(lengths) == 1 and lengths[0].isdigit() and int(lengths[0]) > 0:
                raise Reject("malformed_signature")
        now = v["now"]
        # 3. stale_timestamp
        if abs(created - now) > v["clock_skew_seconds"]:
            raise Reject("stale_timestamp")
        if expires is not None and now > expires:
            raise Reject("stale_timestamp")
        # 4. invalid_signature
        if tag != v["environment"]:
            raise Reject("invalid_signature")
        key = None
        for slot in ("current", "previous", "pending"):
            secret = v.get("secret" if slot == "current" else slot + "_secret")
            if not secret:
                continue
            if hashlib.sha256(secret.encode()).hexdigest()[:8] != keyid.lower():
                continue
            mac = hmac.new(secret.encode(), base.encode(), hashlib.sha256).digest()
            if hmac.compare_digest(mac, sval):
                key = slot
                break
        if key is None:
            raise Reject("invalid_signature")
        # 5. replayed_request
        if nonce is not None and nonce in v["seen_nonces"]:
            raise Reject("replayed_request")
        # 6-7. the body
        if digests is not None:
            body = r.get("body", "").encode()
            if len(body) > v["max_body_bytes"]:
                raise Reject("body_too_large")
            if "sha-256" in digests and hashlib.sha256(body).digest() != digests["sha-256"]:
                raise Reject("content_mismatch")
            if "sha-512" in digests and hashlib.sha512(body).digest() != digests["sha-512"]:
                raise Reject("content_mismatch")
        return ("ok", key, base)
    except Reject as e:
        return (e.code, None, base)


def self_test():
    """RFC 9421 Appendix B.2.5 through this checker's own base builder."""
    items, params = parse_dictionary(
        'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"'
    )["sig-b25"][1:]
    r = {"method": "POST", "scheme": "https", "authority": "example.com", "path": "/foo?param=Value&Pet=dog",
         "headers": [["Date", "Tue, 20 Apr 2021 02:07:55 GMT"], ["Content-Type", "application/json"]]}
    lines = [f'"{n}": {component_value(n, r)}' for n, _ in items]
    lines.append('"@signature-params": ' + ser_inner_list(items, params))
    key = base64.b64decode(
        "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==")
    tag = hmac.new(key, "\n".join(lines).encode(), hashlib.sha256).digest()
    return base64.b64encode(tag).decode() == "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8="


def main():
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "docs" / "signature-rfc9421-vectors.json")
    doc = json.loads(path.read_text())
    if doc.get("scheme") != "RFC9421-HMAC-SHA256-PROFILE-1":
        print(f"{path}: not the RFC 9421 profile vectors")
        return 1
    failed = 0
    if not self_test():
        print("self-test: RFC 9421 Appendix B.2.5 does not come out")
        failed += 1
    cases = doc["cases"]
    for case in cases:
        outcome, key, base = verify(case)
        exp = case["expected"]
        problems = []
        if outcome != exp["outcome"]:
            problems.append(f"outcome {outcome}, expected {exp['outcome']}")
        if key != exp.get("key"):
            problems.append(f"key {key}, expected {exp.get('key')}")
        if base != exp.get("string_to_sign"):
            problems.append("signature base differs")
        if problems:
            failed += 1
            print(f"FAIL {case['name']}: {'; '.join(problems)}")
    print(f"{len(cases) - failed if failed <= len(cases) else 0} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
