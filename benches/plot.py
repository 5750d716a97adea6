#!/usr/bin/env python3
"""Tables and charts of a benches/envoy-load.sh run, from its results.tsv.

Prints the Markdown table (median of the rounds per case and listener) and
writes OUT/envoy-load.md, OUT/throughput.svg (requests/s, saturated) and
OUT/latency.svg (p50 and p99 with one connection). Standard library only:
the SVG is written directly.

Usage: python3 benches/plot.py RESULTS.tsv OUT_DIR [TITLE]
"""

import os
import statistics
import sys
from collections import defaultdict
from html import escape
from pathlib import Path

COLORS = {
    "plain": "#9e9e9e",
    "noop": "#64b5f6",
    "noop_native": "#1565c0",
    "edge_hmac": "#ef6c00",
    "edge_hmac_native": "#c62828",
    "ext_authz": "#7e57c2",
}
# Each filter listener compared with the no-op of its own kind.
NOOP_OF = {"edge_hmac": "noop", "edge_hmac_native": "noop_native", "noop_native": "noop_native"}
MULTI_COLOR = "#2e7d32"
SUFFIXES = (" nonce", " rfc9421", " invalid sig", " unsigned (wrk)")


def read(path):
    rows = defaultdict(list)
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        _, case, listener, rps, cpu, bad, p50, p99, _sat_p99 = line.split("\t")
        rows[(case, listener)].append(
            dict(rps=float(rps), cpu=float(cpu), bad=int(bad), p50=float(p50), p99=float(p99))
        )
    return rows


def medians(rows):
    out = {}
    for key, runs in rows.items():
        out[key] = {k: statistics.median(r[k] for r in runs) for k in ("rps", "cpu", "p50", "p99")}
        out[key]["bad"] = sum(r["bad"] for r in runs)
        out[key]["rounds"] = len(runs)
        out[key]["cpu_min"] = min(r["cpu"] for r in runs)
        out[key]["cpu_max"] = max(r["cpu"] for r in runs)
    return out


def base_case(case):
    for s in SUFFIXES:
        if case.endswith(s):
            return case[: -len(s)]
    return case


def table(med, title):
    lines = [title, ""]
    lines.append(
        "| case | listener | req/s | vs plain | CPU µs/req (spread) | +CPU vs plain | vs its no-op "
        "| p50 µs (1 conn) | +p50 vs plain | p99 µs (1 conn) | non-2xx |"
    )
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (case, listener), m in med.items():
        # Compare with the same case on the baseline when it ran there, else
        # with the base case (GET/0 for its variants); not across Envoys.
        same_envoy = listener in COLORS
        plain = next((k for k in [(case, "plain"), (base_case(case), "plain")] if k in med), None)
        noop_name = NOOP_OF.get(listener, "noop")
        noop = next((k for k in [(case, noop_name), (base_case(case), noop_name)] if k in med), None)
        vs_plain = f"{m['rps'] / med[plain]['rps']:.2f}" if same_envoy and plain else ""
        dcpu = f"{m['cpu'] - med[plain]['cpu']:+.1f}" if same_envoy and plain else ""
        vs_noop = f"{m['cpu'] / med[noop]['cpu']:.2f}" if same_envoy and noop else ""
        dp50 = f"{m['p50'] - med[plain]['p50']:+.0f}" if same_envoy and plain else ""
        spread = f"{m['cpu']:.1f} ({m['cpu_min']:.1f}–{m['cpu_max']:.1f})"
        lines.append(
            f"| {case} | {listener} | {m['rps']:.0f} | {vs_plain} | {spread} | {dcpu} | {vs_noop} "
            f"| {m['p50']:.0f} | {dp50} | {m['p99']:.0f} | {m['bad']} |"
        )
    return "\n".join(lines) + "\n"


def targets(med, sha256_64k_us):
    """The native module's targets (issue 24), from the medians: Envoy CPU
    per request added over `plain` in the same run."""
    def cpu(case, listener):
        return med[(case, listener)]["cpu"] if (case, listener) in med else None

    def added(case, listener):
        c, p = cpu(case, listener), cpu(case, "plain")
        return None if c is None or p is None else c - p

    out = ["", "Targets (Envoy CPU per request, median of the rounds, added over `plain`):", ""]

    def line(ok, text):
        out.append(f"- {'met' if ok else 'MISSED'}: {text}")

    native0, noop0 = added("GET/0", "edge_hmac_native"), added("GET/0", "noop")
    if native0 is not None and noop0 is not None:
        line(native0 <= noop0 / 3,
             f"native GET/0 adds {native0:+.1f} µs; at most a third of what the no-op wasm filter adds ({noop0:+.1f} µs → {noop0 / 3:.1f})")
    native64 = added("POST/64KiB", "edge_hmac_native")
    if native64 is not None and sha256_64k_us:
        line(native64 <= 1.3 * sha256_64k_us,
             f"native POST 64 KiB adds {native64:+.1f} µs; at most 1.3 × criterion's SHA-256 of 64 KiB ({sha256_64k_us:.1f} µs → {1.3 * sha256_64k_us:.1f})")
    cases = list(dict.fromkeys(case for case, _ in med))
    for case in cases:
        n, w, e = cpu(case, "edge_hmac_native"), cpu(case, "edge_hmac"), cpu(case, "ext_authz")
        if n is None:
            continue
        peers = [(name, v) for name, v in (("wasm", w), ("ext_authz", e)) if v is not None]
        line(all(n < v for _, v in peers),
             f"{case}: native {n:.1f} µs vs " + ", ".join(f"{name} {v:.1f}" for name, v in peers))
    return "\n".join(out) + "\n"


def color(listener):
    return COLORS.get(listener, MULTI_COLOR)


def chart(med, metric, label, title, second=None):
    """Horizontal grouped bars: one group per case, one bar per listener.
    `second` draws a thin bar of another metric (p99) behind the first."""
    cases = list(dict.fromkeys(case for case, _ in med))
    listeners = list(dict.fromkeys(listener for _, listener in med))
    bar, gap, left, width, top = 14, 12, 230, 560, 40
    groups = [(c, [l for l in listeners if (c, l) in med]) for c in cases]
    height = top + sum(len(ls) * bar + gap for _, ls in groups) + 60
    vmax = max(max(m[metric], m[second] if second else 0) for m in med.values()) or 1.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<text x="10" y="20" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    y = top
    for case, ls in groups:
        out.append(
            f'<text x="{left - 8}" y="{y + len(ls) * bar / 2 + 4}" text-anchor="end">{escape(case)}</text>'
        )
        for l in ls:
            m = med[(case, l)]
            if second:
                w2 = width * m[second] / vmax
                out.append(
                    f'<rect x="{left}" y="{y + bar * 0.35:.1f}" width="{w2:.1f}" height="{bar * 0.3:.1f}" '
                    f'fill="{color(l)}" opacity="0.35"><title>{escape(l)} {second} {m[second]:.0f}</title></rect>'
                )
            w = width * m[metric] / vmax
            out.append(
                f'<rect x="{left}" y="{y + 1}" width="{w:.1f}" height="{bar - 2}" fill="{color(l)}">'
                f"<title>{escape(l)}: {m[metric]:.0f}</title></rect>"
            )
            out.append(f'<text x="{left + w + 4:.1f}" y="{y + bar - 3}">{m[metric]:.0f}</text>')
            y += bar
        y += gap
    out.append(f'<line x1="{left}" y1="{top - 4}" x2="{left}" y2="{y}" stroke="#444"/>')
    out.append(f'<text x="{left}" y="{y + 16}">{escape(label)}</text>')
    x = left
    for l in listeners:
        out.append(f'<rect x="{x}" y="{y + 26}" width="10" height="10" fill="{color(l)}"/>')
        out.append(f'<text x="{x + 14}" y="{y + 35}">{escape(l)}</text>')
        x += 24 + 7 * len(l)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: plot.py RESULTS.tsv OUT_DIR [TITLE]")
    results, out = sys.argv[1], Path(sys.argv[2])
    title = sys.argv[3] if len(sys.argv) > 3 else "benches/envoy-load.sh"
    med = medians(read(results))
    if not med:
        sys.exit(f"plot.py: no results in {results}")
    text = table(med, title)
    sha = os.environ.get("SHA256_64K_US")
    text += targets(med, float(sha) if sha else None)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "envoy-load.md").write_text(text)
    (out / "throughput.svg").write_text(
        chart(med, "rps", "requests/s (saturated, higher is better)", "Throughput per case and listener")
    )
    (out / "latency.svg").write_text(
        chart(
            med,
            "p50",
            "µs with one connection: p50 (bar), p99 (thin bar; lower is better)",
            "Latency per case and listener",
            second="p99",
        )
    )
    print(f"charts: {out / 'throughput.svg'}, {out / 'latency.svg'}", file=sys.stderr)


if __name__ == "__main__":
    main()
