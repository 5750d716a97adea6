#!/usr/bin/env python3
"""Prints the criterion results of `cargo bench --bench verify` as tables,
with our verify as a ratio to ring and to the raw SHA-256 floor.

Usage: python3 benches/report.py [target/criterion]
"""

import json
import sys
from pathlib import Path


def load(root):
    results = {}
    for bench in root.glob("**/new/benchmark.json"):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        key = (meta["group_id"], meta["function_id"], meta.get("value_str") or "")
        results[key] = {
            "ns": est["median"]["point_estimate"],
            "bytes": (meta.get("throughput") or {}).get("Bytes"),
        }
    return results


def fmt_time(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    r = load(root)
    if not r:
        sys.exit(f"no criterion results under {root}: run cargo bench -p edge-hmac-benches --bench verify")
    sizes = ["0", "1KiB", "64KiB", "1MiB"]
    print("verify (median; throughput = body bytes / time)\n")
    print("| body | edge_hmac valid | invalid tag | valid, previous key | ring | SHA-256 floor | ours / ring | ours / floor |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in sizes:
        g = lambda f: r.get(("verify", f, s))
        ours, inv, prev, ring, floor = (g("edge_hmac/valid"), g("edge_hmac/invalid_tag"),
                                       g("edge_hmac/valid_previous_key"), g("ring/valid"), g("sha256_floor"))
        if not all([ours, inv, prev, ring, floor]):
            continue
        tp = lambda x: f" ({x['bytes'] / x['ns']:.2f} GB/s)" if x["bytes"] else ""
        print(f"| {s} | {fmt_time(ours['ns'])}{tp(ours)} | {fmt_time(inv['ns'])} | {fmt_time(prev['ns'])} | "
              f"{fmt_time(ring['ns'])}{tp(ring)} | {fmt_time(floor['ns'])}{tp(floor)} | "
              f"{ours['ns'] / ring['ns']:.2f} | {ours['ns'] / floor['ns']:.2f} |")
    print("\nHMAC-SHA256 of the ~200-byte string to sign (median)\n")
    print("| implementation | time |")
    print("|---|---:|")
    for (g, f, _), v in sorted(r.items()):
        if g == "hmac_sha256_200B":
            print(f"| {f} | {fmt_time(v['ns'])} |")
    print("\nraw SHA-256 throughput (median)\n")
    print("| size | sha2 0.11 (in use) | sha2 0.10 | ring |")
    print("|---|---:|---:|---:|")
    for s in ["1KiB", "64KiB", "1MiB"]:
        cells = []
        for f in ["sha2-0.11", "sha2-0.10", "ring"]:
            v = r.get(("sha256", f, s))
            cells.append(f"{v['bytes'] / v['ns']:.2f} GB/s" if v else "-")
        print(f"| {s} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
