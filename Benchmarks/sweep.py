#!/usr/bin/env python3
"""Scaling sweeps for `sluice bench`: throughput against rule count, concurrent connections and
packet size, the linear and the compiled classifier in the same run.

Each point runs `sluice bench --json` REPEAT times (linear and compiled interleaved) and keeps
the median. Writes, per sweep, a markdown table (<out>/<sweep>.md), an SVG plot
(<out>/<sweep>.svg) and the raw JSON lines (<out>/<sweep>.jsonl).

    swift build -c release --product sluice --product capgen
    python3 Benchmarks/sweep.py                      # all sweeps into docs/sweeps/
    python3 Benchmarks/sweep.py --sweep rules --repeat 1 --min-seconds 0.5
    swift build -c release --product classbench
    python3 Benchmarks/sweep.py --sweep classbench --pin --dpdk /tmp/dpdkb/build/dpdk_acl_bench   # docs/benchmarks.md

Inputs: the shared corpus beside the repo (../shared/rulesets/classbench, ../shared/rulesets
kube-proxy sets, ../shared/captures/bulk). Rule sets cut to 10 and 100 rules and the flow
captures are written to a temporary directory, never into the repo. Sweeps whose inputs are
missing are skipped with a note. The classbench sweep (issue #5) runs `--stage classify` on the
ClassBench traces themselves, generated once with the anchor's trace_gen.py into --traces (the
expected-index scan takes minutes at 100k rules), beside `classbench` and, with --dpdk, DPDK ACL.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
CLASSBENCH = os.path.join(SHARED, "rulesets", "classbench")
BULK = os.path.join(SHARED, "captures", "bulk")
TRACE_GEN = os.path.join(SHARED, "anchors", "dpdk-acl", "trace_gen.py")
# The bulk captures with routable traffic. bulk/echo-connections.pcap is left out: it was
# recorded on loopback (127.0.0.1 both ways), so on eth0 every packet is a martian, dropped
# after PREROUTING: it would time the martian drop, not the FORWARD chain.
BULK_ROUTABLE = ["emix.pcap", "1kxun.pcap", "gnutella.pcap"]
NETWORK = os.path.join(REPO, "examples", "bench", "network")
CLASSIFIERS = ["linear", "compiled"]
# eth1's address in examples/bench/network: where MASQUERADE puts the requests, and where the
# replies come back to.
MASQ_ADDRESS = "198.19.255.1"


def run_bench(sluice, rules, captures, classifier, min_seconds, extra=(), pin=False):
    cmd = (["taskset", "-c", "1"] if pin else []) + [sluice, "bench", "--network", NETWORK, "--classifier", classifier,
           "--min-seconds", str(min_seconds), "--json"]
    for r in rules:
        cmd += ["--rules", r]
    for c in captures:
        cmd += ["--capture", c]
    cmd += list(extra)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return json.loads(out.stdout)


# --replot: the records of an earlier run (<out>/<sweep>.jsonl), by (label, classifier).
CACHE = None


def load_cache(path):
    global CACHE
    CACHE = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            CACHE.setdefault((r["label"], r["classifier"]), []).append(r)


def measure(sluice, rules, captures, min_seconds, repeat, log, label, extra=()):
    """Median figures per classifier; runs interleaved (linear, compiled, linear, ...)."""
    runs = {c: [] for c in CLASSIFIERS}
    if CACHE is not None:
        for c in CLASSIFIERS:
            runs[c] = CACHE[(label, c)]
    for _ in range(repeat if CACHE is None else 0):
        for c in CLASSIFIERS:
            r = run_bench(sluice, rules, captures, c, min_seconds, extra)
            r["label"] = label
            runs[c].append(r)
            log.write(json.dumps(r) + "\n")
            log.flush()
    result = {}
    for c, rs in runs.items():
        result[c] = {
            "mpps": statistics.median(r["mpps"] for r in rs),
            "mpps_cpu": statistics.median(r["mpps_cpu"] for r in rs),
            "ns_cpu": statistics.median(r["ns_per_packet_cpu"] for r in rs),
            "ns": statistics.median(r["ns_per_packet"] for r in rs),
            "gbps": statistics.median(r["gbps"] for r in rs),
            "mallocs_per_packet": max(r["mallocs_per_packet"] for r in rs),
            "connections": rs[-1]["connections"],
            "rules": rs[-1]["rules"],
            "peak_rss": statistics.median(r["peak_rss_bytes"] for r in rs),
            "rss": statistics.median(r["rss_bytes"] for r in rs),
            "input_memory": rs[-1]["input_memory_bytes"],
            "packets": rs[-1]["capture_packets"],
            "cpu_share": statistics.median(r["cpu_seconds"] / r["seconds"] for r in rs if r["seconds"] > 0),
        }
        print(f"  {label} {c}: {result[c]['mpps']:.3f} Mpps wall, {result[c]['ns_cpu']:.0f} ns/packet CPU, "
              f"mallocs/packet {result[c]['mallocs_per_packet']}", file=sys.stderr)
    return result


# ---------------------------------------------------------------------------------------------
# SVG

def nice_ticks_linear(lo, hi, n=5):
    span = hi - lo if hi > lo else 1
    step = 10 ** math.floor(math.log10(span / n))
    for m in (1, 2, 5, 10):
        if span / (step * m) <= n:
            step *= m
            break
    t = math.floor(lo / step) * step
    ticks = [t]
    while ticks[-1] < hi - step * 1e-9:  # the last tick is at or above hi: every point fits
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def fmt_num(v):
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e3:
        return f"{v / 1e3:g}k"
    if a >= 1:
        return f"{v:g}"
    return f"{v:.3g}"


def svg_plot(path, title, xlabel, ylabel, series, xlog=True, ylog=True, note="", xticks=None):
    """series: list of (name, [(x, y), ...]). Lines with markers, axes, ticks, grid, legend.
    xticks: explicit ticks on a log x axis that spans exactly their range."""
    W, H = 760, 480
    L, R, T, B = 80, 190, 50, 70
    pw, ph = W - L - R, H - T - B
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts if y > 0]
    if not xs or not ys:
        return
    minor_x = xlog and xticks is None
    if xlog and xticks is not None:
        xlo, xhi = min(xticks) / 1.15, max(xticks) * 1.15
        fx = lambda x: L + pw * (math.log10(x) - math.log10(xlo)) / (math.log10(xhi) - math.log10(xlo))
    elif xlog:
        xlo, xhi = 10 ** math.floor(math.log10(min(xs))), 10 ** math.ceil(math.log10(max(xs)))
        xticks = [10 ** e for e in range(int(round(math.log10(xlo))), int(round(math.log10(xhi))) + 1)]
        fx = lambda x: L + pw * (math.log10(x) - math.log10(xlo)) / (math.log10(xhi) - math.log10(xlo))
    else:
        xticks = nice_ticks_linear(0, max(xs))
        xlo, xhi = 0, xticks[-1]
        fx = lambda x: L + pw * (x - xlo) / (xhi - xlo)
    if ylog:
        ylo, yhi = 10 ** math.floor(math.log10(min(ys))), 10 ** math.ceil(math.log10(max(ys)))
        if yhi == ylo:
            yhi = ylo * 10
        yticks = []
        for e in range(int(round(math.log10(ylo))), int(round(math.log10(yhi))) + 1):
            yticks.append(10 ** e)
        fy = lambda y: T + ph - ph * (math.log10(y) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo))
    else:
        yticks = nice_ticks_linear(0, max(ys) * 1.1)
        ylo, yhi = 0, yticks[-1]
        fy = lambda y: T + ph - ph * (y - ylo) / (yhi - ylo)
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    dashes = ["", "6,4", "2,3", "8,3,2,3"]
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         f'font-family="Helvetica, Arial, sans-serif" font-size="13">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L + pw / 2}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{esc(title)}</text>']
    # Grid and ticks.
    for t in xticks:
        x = fx(t)
        o.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{T + ph}" stroke="#ddd"/>')
        o.append(f'<text x="{x:.1f}" y="{T + ph + 18}" text-anchor="middle">{fmt_num(t) if minor_x or not xlog else int(t)}</text>')
    if minor_x:
        for e in range(len(xticks) - 1):
            for m in range(2, 10):
                x = fx(xticks[e] * m)
                o.append(f'<line x1="{x:.1f}" y1="{T + ph}" x2="{x:.1f}" y2="{T + ph + 4}" stroke="#888"/>')
    for t in yticks:
        y = fy(t)
        o.append(f'<line x1="{L}" y1="{y:.1f}" x2="{L + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 8}" y="{y + 4:.1f}" text-anchor="end">{fmt_num(t)}</text>')
    if ylog:
        for e in range(len(yticks) - 1):
            for m in range(2, 10):
                y = fy(yticks[e] * m)
                o.append(f'<line x1="{L - 4}" y1="{y:.1f}" x2="{L}" y2="{y:.1f}" stroke="#888"/>')
    # Axes.
    o.append(f'<line x1="{L}" y1="{T + ph}" x2="{L + pw}" y2="{T + ph}" stroke="black"/>')
    o.append(f'<line x1="{L}" y1="{T}" x2="{L}" y2="{T + ph}" stroke="black"/>')
    o.append(f'<text x="{L + pw / 2}" y="{H - 30}" text-anchor="middle">{esc(xlabel)}{" (log scale)" if xlog else ""}</text>')
    o.append(f'<text transform="translate(22,{T + ph / 2}) rotate(-90)" text-anchor="middle">{esc(ylabel)}{" (log scale)" if ylog else ""}</text>')
    if note:
        o.append(f'<text x="{L}" y="{H - 8}" font-size="11" fill="#555">{esc(note)}</text>')
    # Series and legend.
    for k, (name, pts) in enumerate(series):
        c = colors[k % len(colors)]
        d = dashes[k % len(dashes)]
        dash = f' stroke-dasharray="{d}"' if d else ""
        pts = [(x, y) for x, y in sorted(pts) if y > 0 or not ylog]
        path_d = " ".join(f'{"M" if i == 0 else "L"}{fx(x):.1f},{fy(y):.1f}' for i, (x, y) in enumerate(pts))
        o.append(f'<path d="{path_d}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        for x, y in pts:
            o.append(f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="3.5" fill="{c}"><title>{esc(name)}: {fmt_num(x)} -> {y:.4g}</title></circle>')
        ly = T + 10 + 22 * k
        o.append(f'<line x1="{L + pw + 15}" y1="{ly}" x2="{L + pw + 45}" y2="{ly}" stroke="{c}" stroke-width="2"{dash}/>')
        o.append(f'<circle cx="{L + pw + 30}" cy="{ly}" r="3.5" fill="{c}"/>')
        o.append(f'<text x="{L + pw + 52}" y="{ly + 4}">{esc(name)}</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------------------------------------
# Sweeps

def cut_rules(src, n, dst):
    """The first n rules of a cb2ipt file (FORWARD chain, policy DROP), as a new file."""
    out, kept = [], 0
    with open(src) as f:
        for line in f:
            if line.startswith("-A "):
                if kept >= n:
                    continue
                kept += 1
            out.append(line)
    with open(dst, "w") as f:
        f.writelines(out)
    return dst


def open_log(a, sweep):
    """The sweep's JSON lines, one per run; left as they are when replotting."""
    return open(os.devnull if CACHE is not None else os.path.join(a.out, f"{sweep}.jsonl"), "w")


def gen(cmd, **kw):
    """Runs capgen, unless replotting (then the captures are not needed)."""
    if CACHE is None:
        subprocess.run(cmd)


def remove(*paths):
    for p in paths:
        if os.path.exists(p):
            os.remove(p)


def sweep_rules(a, tmp):
    base = os.path.join(CLASSBENCH, "acl1_1k.rules")
    caps = [os.path.join(BULK, c) for c in BULK_ROUTABLE]
    if not os.path.exists(base) or not all(os.path.exists(c) for c in caps):
        print("rules sweep: SKIPPED (../shared/rulesets/classbench or ../shared/captures/bulk missing)", file=sys.stderr)
        return None
    sets = [("acl1 first 10", cut_rules(base, 10, os.path.join(tmp, "acl1_10.rules"))),
            ("acl1 first 100", cut_rules(base, 100, os.path.join(tmp, "acl1_100.rules"))),
            ("acl1_1k", base),
            ("acl1_10k", os.path.join(CLASSBENCH, "acl1_10k.rules")),
            ("acl1_100k", os.path.join(CLASSBENCH, "acl1_100k.rules"))]
    kube = [("kube-proxy-overall-test", os.path.join(SHARED, "rulesets", "kube-proxy-overall-test.rules")),
            ("kube-proxy-5000svc", os.path.join(SHARED, "rulesets", "generated", "kube-proxy-5000svc.rules"))]
    rows = []
    with open_log(a, "rules") as log:
        for name, path in sets + kube:
            if not os.path.exists(path):
                print(f"rules sweep: {name}: SKIPPED ({path} missing)", file=sys.stderr)
                continue
            r = measure(a.sluice, [path], caps, a.min_seconds, a.repeat, log, name)
            rows.append((name, r))
    lines = ["| rule set | rules | linear Mpps (wall) | compiled Mpps (wall) | linear ns/packet (CPU) | compiled ns/packet (CPU) | compiled / linear (CPU) | mallocs/packet (max) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in rows:
        li, co = r["linear"], r["compiled"]
        lines.append(f"| {name} | {li['rules']:,} | {li['mpps']:.3f} | {co['mpps']:.3f} | {li['ns_cpu']:,.0f} | {co['ns_cpu']:,.0f} | "
                     f"{li['ns_cpu'] / co['ns_cpu']:.2f}x | {max(li['mallocs_per_packet'], co['mallocs_per_packet'])} |")
    write_md(a, "rules", "Throughput against rule count (ClassBench acl1 in FORWARD, policy DROP; kube-proxy sets)",
             f"Captures: {', '.join(BULK_ROUTABLE)} from ../shared/captures/bulk, merged, arriving on eth0 of examples/bench/network; full pipeline.", lines)
    cb = [(n, r) for n, r in rows if n.startswith("acl1")]
    svg_plot(os.path.join(a.out, "rules.svg"), "Full pipeline vs. rule count (ClassBench acl1, FORWARD)",
             "rules in FORWARD", "Mpps per CPU-second",
             [(c, [(r[c]["rules"], r[c]["mpps_cpu"]) for _, r in cb]) for c in CLASSIFIERS],
             note=f"median of {a.repeat}; bulk captures {'+'.join(BULK_ROUTABLE)}; 2 shared vCPUs")
    return rows


def pcap_head(src, n, dst):
    """The first n records of a pcap file (classic format), as a new file."""
    with open(src, "rb") as f:
        data = f.read()
    little = data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    at, kept = 24, 0
    while at + 16 <= len(data) and kept < n:
        incl = int.from_bytes(data[at + 8:at + 12], "little" if little else "big")
        at += 16 + incl
        kept += 1
    with open(dst, "wb") as f:
        f.write(data[:at])
    return dst


def trace_for(a, name, filters):
    """<traces>/<name>.trace and .pcap from the anchor's trace_gen.py (seed 1, --trace-packets
    headers), written once and kept: the expected-index scan takes minutes at 100k rules."""
    trace = os.path.join(a.traces, f"{name}.trace")
    pcap = os.path.join(a.traces, f"{name}.pcap")
    if CACHE is None and not (os.path.exists(trace) and os.path.exists(pcap)):
        os.makedirs(a.traces, exist_ok=True)
        print(f"  {name}: trace_gen.py -n {a.trace_packets} --seed 1 (kept in {a.traces})", file=sys.stderr)
        subprocess.run([sys.executable, TRACE_GEN, "-n", str(a.trace_packets), "--seed", "1",
                        "--prefix", os.path.join(a.traces, name), filters], check=True,
                       stdout=subprocess.DEVNULL)
    return trace, pcap


def lookup_figures(a, name, rules_dir):
    """The bare lookup on the same trace: `classbench` (one at a time, bursts of 64, mismatches
    against the trace's expected index, structure bytes, build ms), and DPDK ACL's harness when
    --dpdk names it (median ns of 5 passes, bursts of 64, its own mismatch count)."""
    out = {"single": None, "burst": None, "mismatches": None, "bytes": None, "build_ms": None, "dpdk": None,
           "dpdk_mismatches": None}
    if CACHE is not None:
        return CACHE.get((name, "lookup"), [out])[0]
    pin = ["taskset", "-c", "1"] if a.pin else []
    if os.access(a.classbench, os.X_OK):
        r = subprocess.run(pin + [a.classbench, "--rules", rules_dir, "--traces", a.traces, "--passes", "3",
                                  "--linear-limit", "1", name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # Its table: a header line ("set\trules\t...") and a row per set, by column name.
        header = None
        for line in r.stdout.splitlines():
            c = line.split("\t")
            if c[0] == "set":
                header = c
            elif header and c[0] == name and len(c) == len(header):
                v = dict(zip(header, c))
                out.update(single=float(v["compiled_ns"]), burst=float(v["burst64_ns"]), mismatches=int(v["mismatches"]),
                           bytes=int(v["structure_bytes"]), build_ms=float(v["build_ms"]))
    if a.dpdk:
        mem = "4096" if name.endswith("_100k") else "2048"
        r = subprocess.run(pin + [a.dpdk, "--no-huge", "--no-pci", "-m", mem, "--no-shconf", "--file-prefix=sluicesweep",
                                  "-l", "1", "--no-telemetry", "--force-max-simd-bitwidth=512", "--log-level=lib.eal:warning", "--",
                                  "-r", os.path.join(rules_dir, name), "-t", os.path.join(a.traces, f"{name}.trace"),
                                  "-a", "default", "-n", "5", "-b", "64", "-N", name],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in r.stdout.splitlines():
            if "RESULT" in line:
                f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
                out["dpdk"] = float(f["ns_per_pkt"])
                out["dpdk_mismatches"] = int(f["mismatches"])
    return out


def sweep_classbench(a, tmp):
    """`sluice bench --stage classify` on the ClassBench traces themselves (issue #5's benchmark),
    with the bare lookup (`classbench`) and DPDK ACL on the same trace in the same run."""
    base = os.path.join(CLASSBENCH, "acl1_1k")
    if not os.path.exists(base) or not os.path.exists(TRACE_GEN):
        print("classbench sweep: SKIPPED (../shared/rulesets/classbench or ../shared/anchors/dpdk-acl missing)",
              file=sys.stderr)
        return None
    # The 10- and 100-rule sets are acl1_1k's first filters; their filter files and rules go to
    # the traces directory (outside the repo) beside their traces, where classbench and DPDK
    # look for them.
    os.makedirs(a.traces, exist_ok=True)
    sets = []
    for n in (10, 100):
        name = f"acl1_{n}"
        filters = os.path.join(a.traces, name)
        with open(base) as f, open(filters, "w") as g:
            g.writelines(f.readlines()[:n])
        cut_rules(os.path.join(CLASSBENCH, "acl1_1k.rules"), n, os.path.join(a.traces, f"{name}.rules"))
        sets.append((name, a.traces))
    sets += [(s, CLASSBENCH) for s in ("acl1_1k", "acl1_10k", "acl1_100k")]
    rows = []
    with open_log(a, "classbench") as log:
        for name, rules_dir in sets:
            filters, rules = os.path.join(rules_dir, name), os.path.join(rules_dir, f"{name}.rules")
            if not os.path.exists(filters) or not os.path.exists(rules):
                print(f"classbench sweep: {name}: SKIPPED ({rules} missing)", file=sys.stderr)
                continue
            trace, pcap = trace_for(a, name, filters)
            # The linear scan walks half the rules per packet on average: it gets the trace's
            # first packets only, about 4e8 / rules of them (a pass of about a second).
            count = sum(1 for line in open(rules) if line.startswith("-A "))
            short = pcap
            if count > 400 and CACHE is None:
                short = pcap_head(pcap, max(1000, 400_000_000 // count), os.path.join(tmp, f"{name}-head.pcap"))
            runs = {c: [] for c in CLASSIFIERS}
            if CACHE is not None:
                runs = {c: CACHE[(name, c)] for c in CLASSIFIERS}
            for _ in range(a.repeat if CACHE is None else 0):
                for c in CLASSIFIERS:
                    r = run_bench(a.sluice, [rules], [short if c == "linear" else pcap], c, a.min_seconds,
                                  ["--stage", "classify"], pin=a.pin)
                    r["label"] = name
                    runs[c].append(r)
                    log.write(json.dumps(r) + "\n")
                    log.flush()
            look = lookup_figures(a, name, rules_dir)
            if CACHE is None:
                log.write(json.dumps(dict(look, label=name, classifier="lookup")) + "\n")
            med = {c: statistics.median(r["ns_per_packet_cpu"] for r in runs[c]) for c in CLASSIFIERS}
            mallocs = max(r["mallocs_per_packet"] for c in CLASSIFIERS for r in runs[c])
            print(f"  {name}: classify stage compiled {med['compiled']:.1f} ns, linear {med['linear']:.0f} ns; "
                  f"lookup {look['single']} / {look['burst']} ns, DPDK {look['dpdk']}", file=sys.stderr)
            head = ""
            if os.path.exists(trace):
                with open(trace) as f:
                    head = f.readline()
            packets = int(head.split("packets=")[1].split()[0]) if "packets=" in head else runs["compiled"][-1]["capture_packets"]
            rows.append((name, count, packets, med, mallocs, look))
    def f1(v):
        return "-" if v is None else f"{v:,.1f}"
    lines = ["| set | rules | trace packets | classify stage, compiled (ns/packet CPU) | x the 100-rule row | linear (ns/packet CPU) | "
             "compiled / linear | lookup one at a time (ns) | x the 100-rule row | lookup in bursts of 64 (ns) | "
             "DPDK ACL (ns) | lookup / DPDK | structure (bytes) | build (ms) | mismatches | mallocs/packet |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    ref = next((r for r in rows if r[0] == "acl1_100"), None)
    for name, count, packets, med, mallocs, look in rows:
        x = "-" if ref is None else f"{med['compiled'] / ref[3]['compiled']:.2f}x"
        xl = "-" if ref is None or look["single"] is None or ref[5]["single"] is None else f"{look['single'] / ref[5]['single']:.2f}x"
        vs = "-" if look["single"] is None or not look["dpdk"] else f"{min(look['single'], look['burst']) / look['dpdk']:.2f}x"
        mm = "-" if look["mismatches"] is None else f"{look['mismatches']}" + ("" if look["dpdk_mismatches"] is None else f" / {look['dpdk_mismatches']}")
        lines.append(f"| {name} | {count:,} | {packets:,} | {med['compiled']:,.1f} | {x} | {med['linear']:,.0f} | {med['linear'] / med['compiled']:,.1f}x | "
                     f"{f1(look['single'])} | {xl} | {f1(look['burst'])} | {f1(look['dpdk'])} | {vs} | "
                     f"{'-' if look['bytes'] is None else format(look['bytes'], ',')} | {f1(look['build_ms'])} | {mm} | {mallocs} |")
    write_md(a, "classbench", "ClassBench traces through the FORWARD chain (`--stage classify`), the bare lookup and DPDK ACL",
             f"acl1 sets (10 and 100: acl1_1k's first filters), traces from the anchor's trace_gen.py (seed 1, "
             f"--trace-packets headers, {a.trace_packets:,} unless kept from an earlier run; 90% inside a rule, 10% random), the pcap arriving on eth0 of examples/bench/network. "
             "The linear scan gets the trace's first 4e8 / rules packets (at least 1,000). "
             "Lookup columns: `classbench` on the same trace (fastest of 3 passes per 50,000-packet chunk, thread CPU time), "
             "DPDK ACL: the anchor's harness, `-a default`, bursts of 64, median of 5 passes; lookup / DPDK takes the better "
             "of one-at-a-time and bursts. Mismatches: packets whose first match differs from the trace's expected index "
             "(classbench / DPDK).", lines)
    svg_plot(os.path.join(a.out, "classbench.svg"), "Classify stage vs. rule count (ClassBench acl1 traces, FORWARD)",
             "rules in FORWARD", "Mpps per CPU-second",
             [(c, [(count, 1e3 / med[c]) for _, count, _, med, _, _ in rows]) for c in CLASSIFIERS],
             note=f"median of {a.repeat}; --stage classify; 2 shared vCPUs")
    return rows


def sweep_connections(a, tmp):
    rows = []
    rules = os.path.join(REPO, "examples", "bench", "stateful.rules")
    with open_log(a, "connections") as log:
        for n, label in [(1000, "1k"), (100_000, "100k"), (1_000_000, "1M")]:
            cap = os.path.join(tmp, f"flows-{label}.pcap")
            gen([a.capgen, "flows", str(n), cap, "--packets", "2", "--size", "64"])
            r = measure(a.sluice, [rules], [cap], a.min_seconds, a.repeat, log, label, ["--conntrack-max", str(1 << 21)])
            rows.append((n, r))
            remove(cap)
    lines = ["| flows (UDP, request + reply) | connections at the end | linear Mpps (wall) | compiled Mpps (wall) | linear ns/packet (CPU) | compiled ns/packet (CPU) | RSS at the end, MiB | peak RSS MiB | mallocs/packet (max) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n, r in rows:
        li, co = r["linear"], r["compiled"]
        lines.append(f"| {n:,} | {li['connections']:,} | {li['mpps']:.3f} | {co['mpps']:.3f} | {li['ns_cpu']:,.0f} | {co['ns_cpu']:,.0f} | "
                     f"{li['rss'] / 2**20:.1f} | {li['peak_rss'] / 2**20:.1f} | {max(li['mallocs_per_packet'], co['mallocs_per_packet'])} |")
    if len(rows) >= 2:
        (n0, r0), (n1, r1) = rows[0], rows[-1]
        grow = (r1["linear"]["rss"] - r0["linear"]["rss"]) - (r1["linear"]["input_memory"] - r0["linear"]["input_memory"])
        per = grow / (r1["linear"]["connections"] - r0["linear"]["connections"])
        lines.append("")
        lines.append(f"Memory per connection: VmRSS after the run grew by {(r1['linear']['rss'] - r0['linear']['rss']) / 2**20:.1f} MiB "
                     f"from {n0:,} to {n1:,} connections; less the growth of the bench's own copy of the capture "
                     f"({(r1['linear']['input_memory'] - r0['linear']['input_memory']) / 2**20:.1f} MiB) that is {grow / 2**20:.1f} MiB, "
                     f"or {per:.0f} bytes per connection (table capacity 2,097,152 in both runs, so its bucket heads cancel out). "
                     f"Peak RSS (VmHWM) is higher: it includes the capture file read while loading, freed before the timed passes.")
    write_md(a, "connections", "Throughput against concurrent connections (examples/bench/stateful.rules)",
             "Captures: `capgen flows N` (one request and one reply per flow, 64-byte frames), conntrack table of 2^21.", lines)
    svg_plot(os.path.join(a.out, "connections.svg"), "Stateful forwarding vs. concurrent connections",
             "connections", "Mpps per CPU-second",
             [(c, [(n, r[c]["mpps_cpu"]) for n, r in rows]) for c in CLASSIFIERS], ylog=False,
             note=f"median of {a.repeat}; examples/bench/stateful.rules; 2 shared vCPUs")
    return rows


def sweep_size(a, tmp):
    rows = []
    rules = os.path.join(REPO, "examples", "bench", "masquerade.rules")
    with open_log(a, "size") as log:
        for size in [64, 128, 256, 512, 1024, 1514]:
            cap, rep = os.path.join(tmp, f"size-{size}.pcap"), os.path.join(tmp, f"size-{size}-replies.pcap")
            gen([a.capgen, "flows", "1000", cap, "--packets", "4", "--size", str(size), "--replies-to", MASQ_ADDRESS, rep])
            r = measure(a.sluice, [rules], ["eth0=" + cap, "eth1=" + rep], a.min_seconds, a.repeat, log, f"{size} B")
            rows.append((size, r))
            remove(cap, rep)
    lines = ["| frame bytes | linear Mpps (wall) | compiled Mpps (wall) | linear ns/packet (CPU) | compiled ns/packet (CPU) | linear Gbit/s (wall) | mallocs/packet (max) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s, r in rows:
        li, co = r["linear"], r["compiled"]
        lines.append(f"| {s} | {li['mpps']:.3f} | {co['mpps']:.3f} | {li['ns_cpu']:,.0f} | {co['ns_cpu']:,.0f} | {li['gbps']:.2f} | "
                     f"{max(li['mallocs_per_packet'], co['mallocs_per_packet'])} |")
    write_md(a, "size", "Throughput against packet size (examples/bench/masquerade.rules: conntrack + MASQUERADE)",
             "Captures: `capgen flows 1000 --packets 4 --size BYTES --replies-to 198.19.255.1 R.pcap`: requests arrive on eth0 and are "
             "masqueraded out eth1; replies arrive on eth1 addressed to 198.19.255.1, are de-NATed and go out eth0. Every packet is rewritten.", lines)
    svg_plot(os.path.join(a.out, "size.svg"), "Conntrack + MASQUERADE vs. frame size",
             "Ethernet frame bytes", "Mpps per CPU-second",
             [(c, [(s, r[c]["mpps_cpu"]) for s, r in rows]) for c in CLASSIFIERS], xlog=True, ylog=False,
             xticks=[s for s, _ in rows],
             note=f"median of {a.repeat}; 1,000 UDP flows; 2 shared vCPUs")
    return rows


def sweep_stages(a, tmp):
    """Per-stage cost by separate runs: parse only, FORWARD chains only, full pipeline with
    accept-all (parse + routing + hooks), stateful (+ conntrack), masquerade (+ NAT rewrite)."""
    cap = os.path.join(tmp, "stages.pcap")
    gen([a.capgen, "flows", "10000", cap, "--packets", "4", "--size", "64"])
    # For MASQUERADE the replies come back to the masquerading address, on eth1.
    nat_req, nat_rep = os.path.join(tmp, "stages-nat.pcap"), os.path.join(tmp, "stages-nat-replies.pcap")
    gen([a.capgen, "flows", "10000", nat_req, "--packets", "4", "--size", "64", "--replies-to", MASQ_ADDRESS, nat_rep])
    ex = os.path.join(REPO, "examples", "bench")
    steps = [("parse (PacketParser)", "accept-all.rules", ["--stage", "parse"]),
             ("classify (FORWARD chains, 1 rule)", "accept-all.rules", ["--stage", "classify"]),
             ("full, accept-all (parse + routing + hooks + 1 rule)", "accept-all.rules", []),
             ("full, stateful (+ conntrack lookup/insert, 2 ctstate rules)", "stateful.rules", []),
             ("full, masquerade (+ NAT binding and rewrite)", "masquerade.rules", [])]
    rows = []
    with open_log(a, "stages") as log:
        for name, rules, extra in steps:
            caps = ["eth0=" + nat_req, "eth1=" + nat_rep] if rules == "masquerade.rules" else [cap]
            r = measure(a.sluice, [os.path.join(ex, rules)], caps, a.min_seconds, a.repeat, log, name, extra)
            rows.append((name, r))
    remove(cap, nat_req, nat_rep)
    lines = ["| run | linear ns/packet (CPU) | compiled ns/packet (CPU) | linear Mpps (wall) | mallocs/packet (max) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in rows:
        li, co = r["linear"], r["compiled"]
        lines.append(f"| {name} | {li['ns_cpu']:,.0f} | {co['ns_cpu']:,.0f} | {li['mpps']:.3f} | {max(li['mallocs_per_packet'], co['mallocs_per_packet'])} |")
    ns = [r["linear"]["ns_cpu"] for _, r in rows]
    lines.append("")
    lines.append(f"Differences (linear, CPU time): conntrack ≈ {ns[3] - ns[2]:,.0f} ns/packet (stateful − accept-all), "
                 f"NAT binding + rewrite ≈ {ns[4] - ns[3]:,.0f} ns/packet (masquerade − stateful), "
                 f"routing + hooks + verdict ≈ {ns[2] - ns[0] - ns[1]:,.0f} ns/packet (accept-all − parse − classify).")
    write_md(a, "stages", "Per-stage cost, by separate runs",
             "Capture: `capgen flows 10000 --packets 4 --size 64` (request, reply, request, reply per flow), arriving on eth0 of "
             "examples/bench/network and forwarded both ways; for masquerade, the same flows with the replies arriving on eth1 "
             "addressed to the masquerading address (`--replies-to 198.19.255.1`).", lines)
    return rows


def write_md(a, name, title, intro, lines):
    with open(os.path.join(a.out, f"{name}.md"), "w") as f:
        f.write(f"### {title}\n\n{intro} Median of {a.repeat} runs of `sluice bench --min-seconds {a.min_seconds}` per cell; "
                f"Mpps (wall) is packets over wall-clock time, ns/packet (CPU) is over the bench thread's CPU time.\n\n")
        f.write("\n".join(lines) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", action="append", choices=["rules", "connections", "size", "stages", "classbench"],
                   help="which sweep (repeatable; default: rules, connections, size, stages; classbench only when named)")
    p.add_argument("--out", default=os.path.join(REPO, "docs", "sweeps"))
    p.add_argument("--sluice", default=os.path.join(REPO, ".build", "release", "sluice"))
    p.add_argument("--capgen", default=os.path.join(REPO, ".build", "release", "capgen"))
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--replot", action="store_true",
                   help="no measuring: rebuild the tables and plots from <out>/<sweep>.jsonl of an earlier run")
    p.add_argument("--classbench", default=os.path.join(REPO, ".build", "release", "classbench"),
                   help="the classbench tool, for the classbench sweep's lookup columns")
    p.add_argument("--dpdk", help="a built DPDK ACL harness (../shared/anchors/dpdk-acl's dpdk_acl_bench, built outside "
                                  "../shared: docs/benchmarks.md) for the classbench sweep's anchor column; without it "
                                  "the column is empty")
    p.add_argument("--traces", default=os.path.join(tempfile.gettempdir(), "sluice-classbench-traces"),
                   help="where the classbench sweep keeps its generated traces (outside the repo)")
    p.add_argument("--trace-packets", type=int, default=1_000_000)
    p.add_argument("--pin", action="store_true", help="classbench sweep: run sluice bench, classbench and DPDK on CPU 1 (taskset)")
    a = p.parse_args()
    for exe in (a.sluice, a.capgen):
        if not os.access(exe, os.X_OK):
            sys.exit(f"{exe} not built: swift build -c release --product sluice --product capgen")
    os.makedirs(a.out, exist_ok=True)
    sweeps = a.sweep or ["rules", "connections", "size", "stages"]
    with tempfile.TemporaryDirectory(prefix="sluice-sweep-") as tmp:
        for s in sweeps:
            print(f"== sweep {s}", file=sys.stderr)
            if a.replot:
                load_cache(os.path.join(a.out, f"{s}.jsonl"))
                a.repeat = len(next(iter(CACHE.values())))
            {"rules": sweep_rules, "connections": sweep_connections, "size": sweep_size, "stages": sweep_stages,
             "classbench": sweep_classbench}[s](a, tmp)


if __name__ == "__main__":
    main()
