#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Plots for `make bench`: PNGs next to the benchmark's JSON.

Usage:
    scripts/plot-bench.py RESULTS.json [--timeseries SAMPLES.jsonl] [--outdir DIR]
    scripts/plot-bench.py --timeseries SAMPLES.jsonl [--outdir DIR] [--device NAME]

Runs with Debian's /usr/bin/python3 and python3-matplotlib (scripts/setup.sh
installs it). Writes, into DIR (default: the directory of RESULTS.json, else of
SAMPLES.jsonl), and prints the path of each file written:

    throughput.png        median IOPS ratio to raw per workload and configuration,
                          with the goal of each workload drawn as a dashed line
    prefetch-outcomes.png hit / late / waste % per workload (aether)
    timeseries.png        IOPS, hit % (late %, gate open %), phi, eps and depth
                          against time

A plot whose data is absent (no workload has prefetch counters, no
--timeseries) is not written, and a line on stderr says so. Exit status: 0 done;
1 unreadable or malformed input (one line naming the problem, nothing written);
2 bad command line; 3 matplotlib missing.

RESULTS.json, schema "aether-bench/2" (written by the bench; every field not
marked required may be missing, and any workload or configuration may be absent):

    {
      "schema": "aether-bench/2",
      "kernel": "6.12.117", "accel": "tcg", "rounds": 5, "seconds_per_run": 5,
      "workloads": [                                   # required, may be empty
        {
          "name": "seq",                               # required
          "description": "sequential 4 KiB QD1 psync",
          "median_iops": {"raw": 4000, "linux_buffered": 19400, "gate_off": 3950, "aether": 21000},
          "median_ratio": {"aether/raw": 5.2, "aether/linux_buffered": 1.08, "linux_buffered/raw": 4.8,
                           "gate_off/raw": 0.99},
          "device_bytes_read": {"raw": 100663296, "aether": 101711872},
          "goal": {"baseline": "linux_buffered", "min": 1.0},
          "prefetch": {"hit_pct": 92.1, "late_pct": 3.2, "waste_pct": 1.4,
                       "demand_blocks": 24576, "issued": 24000, "hits": 22100, "late": 770, "wasted": 330}
        }, ...
      ]
    }

  Configurations (keys of median_iops): raw (O_DIRECT on the NVMe namespace),
  linux_buffered (buffered reads, Linux readahead), gate_off (aether with
  enabled=0), aether; others (e.g. linear, dm-linear) are plotted too. Aliases
  accepted: aether_off -> gate_off, buffered / linux -> linux_buffered.
  Canonical workload names, plotted in this order: seq, stride, randread_qd1,
  randread_qd32, loaders4, interleaved8, mixed70_30; other names follow.
  A bar's height is median_ratio["<config>/raw"] (the median over rounds of the
  within-round ratio); without it, median_iops[config] / median_iops["raw"].
  goal: aether must reach min x baseline. Without a goal field, the goals of
  issue 9 apply: seq >= 1.0 x linux_buffered, stride >= 3 x raw, loaders4 >= 2 x
  raw, interleaved8 >= 3 x raw, randread_qd1/qd32 >= 0.98 x raw.
  prefetch: aether's outcomes over the workload, defined as aether-stat
  defines them: hit_pct = hits / demand_blocks, late_pct = late /
  demand_blocks, waste_pct = wasted / (hits + late + wasted), in %, where
  demand_blocks = read_bytes / 4096 and hits, late, wasted are the deltas of
  prefetch_hits, prefetch_late, prefetch_wasted (4 KiB blocks). When the
  percentages are absent they are computed from "demand_blocks", "hits",
  "late" and "wasted".
  The older shape written by scripts/guest/bench.sh before schema 2 (a
  "results" list of {"iodepth", "median_iops": {raw, linear, aether_off,
  aether}, "median_ratio"}) is read as workloads randread_qd1 / randread_qd32.

SAMPLES.jsonl (the time series), one JSON object per line; blank lines and
lines starting with '#' are skipped:

  - a sample: a line of `aether-stat --json` output, i.e. an object with
    "device", "t" (seconds) and any of "reads_per_s", "hit_pct", "late_pct",
    "gate_open_pct", "phi", "eps", "depth" (null = unknown), usually
    "unix_time" too;
  - a phase marker: {"phase": "random", "unix_time": 1764870000} or
    {"phase": "random", "t": 12.0}: the phase starting then (e.g. printed by the
    job with `date +%s` between its fio runs).

  With several devices, --device picks one (default: the one with most samples).
"""

import argparse
import json
import math
import os
import sys

CANON_WORKLOADS = ["seq", "stride", "randread_qd1", "randread_qd32", "loaders4", "interleaved8", "mixed70_30"]
LABELS = {
    "seq": "seq 4K\nQD1",
    "stride": "stride\n4K/32K",
    "randread_qd1": "random\nQD1",
    "randread_qd32": "random\nQD32",
    "loaders4": "4 loaders\n128K",
    "interleaved8": "8 interl.\nstreams",
    "mixed70_30": "70/30\nmixed",
}
CANON_CONFIGS = ["raw", "linux_buffered", "linear", "gate_off", "aether"]
ALIASES = {"aether_off": "gate_off", "buffered": "linux_buffered", "linux": "linux_buffered",
           "dm_linear": "linear", "dm-linear": "linear"}
COLORS = {"raw": "#9e9e9e", "linux_buffered": "#4c72b0", "linear": "#c0c0c0", "gate_off": "#dd8452",
          "aether": "#2a9d50"}
# Issue 9's goals: aether >= min x baseline.
DEFAULT_GOALS = {
    "seq": {"baseline": "linux_buffered", "min": 1.0},
    "stride": {"baseline": "raw", "min": 3.0},
    "loaders4": {"baseline": "raw", "min": 2.0},
    "interleaved8": {"baseline": "raw", "min": 3.0},
    "randread_qd1": {"baseline": "raw", "min": 0.98},
    "randread_qd32": {"baseline": "raw", "min": 0.98},
}


class InputError(Exception):
    """Malformed or unreadable input: reported as one line, exit 1."""


def note(msg):
    print("plot-bench: " + msg, file=sys.stderr)


def num(v):
    """A finite number, or None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def canon_config(name):
    return ALIASES.get(name, name)


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise InputError("cannot read %s: %s" % (path, e.strerror or e))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError("%s is not valid JSON: %s" % (path, e))


def normalize_results(doc, path="results"):
    """Returns the list of workloads in schema 2 form, whichever shape `doc` has."""
    if not isinstance(doc, dict):
        raise InputError("%s: top level is not a JSON object" % path)
    if "workloads" in doc:
        wls = doc["workloads"]
        if not isinstance(wls, list):
            raise InputError("%s: \"workloads\" is not a list" % path)
    elif "results" in doc and isinstance(doc["results"], list):
        # Schema 1: randread at several depths.
        wls = []
        for r in doc["results"]:
            if not isinstance(r, dict) or num(r.get("iodepth")) is None:
                raise InputError("%s: a \"results\" entry has no numeric iodepth" % path)
            wls.append({"name": "randread_qd%d" % int(r["iodepth"]), "median_iops": r.get("median_iops", {}),
                        "median_ratio": r.get("median_ratio", {})})
    else:
        raise InputError("%s: neither \"workloads\" (schema aether-bench/2) nor \"results\" (schema 1)" % path)
    out = []
    for w in wls:
        if not isinstance(w, dict) or not isinstance(w.get("name"), str) or not w["name"]:
            raise InputError("%s: a workload has no \"name\"" % path)
        iops = {canon_config(k): num(v) for k, v in (w.get("median_iops") or {}).items()}
        ratio = {}
        for k, v in (w.get("median_ratio") or {}).items():
            a, _, b = k.partition("/")
            ratio[canon_config(a) + "/" + canon_config(b)] = num(v)
        out.append({"name": w["name"], "description": w.get("description"), "iops": iops, "ratio": ratio,
                    "goal": w.get("goal", DEFAULT_GOALS.get(w["name"])), "prefetch": w.get("prefetch")})
    order = {n: i for i, n in enumerate(CANON_WORKLOADS)}
    out.sort(key=lambda w: (order.get(w["name"], len(order)), w["name"]))
    return out


def ratio_to(w, config, base):
    """Median ratio config/base, from median_ratio or else from the median IOPS."""
    if config == base:
        return 1.0 if (w["iops"].get(base) or f"{config}/{base}" in w["ratio"]) else None
    r = w["ratio"].get(config + "/" + base)
    if r is not None:
        return r
    a, b = w["iops"].get(config), w["iops"].get(base)
    if a is not None and b:
        return a / b
    return None


def goal_in_raw_units(w):
    """The goal as a multiple of raw IOPS, or None."""
    g = w.get("goal")
    if not isinstance(g, dict) or num(g.get("min")) is None:
        return None
    base = canon_config(str(g.get("baseline", "raw")))
    scale = ratio_to(w, base, "raw")
    return None if scale is None else num(g["min"]) * scale


def goal_label(w):
    g = w["goal"]
    return "goal \u2265 %g\u00d7 %s" % (num(g["min"]), canon_config(str(g.get("baseline", "raw"))).replace("_", " "))


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _subtitle(doc):
    bits = []
    for k, fmt in (("kernel", "kernel %s"), ("accel", "%s"), ("rounds", "%s rounds"),
                   ("seconds_per_run", "%s s per run")):
        if isinstance(doc, dict) and doc.get(k) not in (None, ""):
            bits.append(fmt % doc[k])
    return ", ".join(bits)


def plot_throughput(workloads, out_png, subtitle=""):
    """Grouped bars: each configuration's median IOPS ratio to raw. Returns what was drawn:
    {"configs": [...], "workloads": [...], "goals": {workload: y}, "met": {workload: bool}}."""
    present = {c for w in workloads for c in w["iops"]} | {k.split("/")[0] for w in workloads for k in w["ratio"]}
    configs = [c for c in CANON_CONFIGS if c in present] + sorted(present - set(CANON_CONFIGS))
    shown = [w for w in workloads if any(ratio_to(w, c, "raw") is not None for c in configs)]
    if not shown or not configs:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(8.0, 1.5 * len(shown) + 3), 5.4), dpi=110)
    width = 0.8 / len(configs)
    drawn = {"configs": configs, "workloads": [w["name"] for w in shown], "goals": {}, "met": {}}
    top = 1.0
    for ci, c in enumerate(configs):
        xs, ys = [], []
        for wi, w in enumerate(shown):
            r = ratio_to(w, c, "raw")
            if r is not None:
                xs.append(wi - 0.4 + width * (ci + 0.5))
                ys.append(r)
        if not xs:
            continue
        top = max(top, max(ys))
        bars = ax.bar(xs, ys, width * 0.92, label=c.replace("_", " "), color=COLORS.get(c), edgecolor="black",
                      linewidth=0.4, zorder=2)
        if c == "aether":
            for t in ax.bar_label(bars, labels=["%.2f\u00d7" % y for y in ys], fontsize=8, padding=3):
                # Readable where a goal line runs through it.
                t.set_bbox(dict(facecolor="white", edgecolor="none", alpha=0.85, pad=1))
                t.set_zorder(5)
    for wi, w in enumerate(shown):
        g = goal_in_raw_units(w)
        if g is None:
            continue
        a = ratio_to(w, "aether", "raw")
        met = a is not None and a >= g
        drawn["goals"][w["name"]] = g
        drawn["met"][w["name"]] = met
        top = max(top, g)
        color = "#1b7f3b" if met else "#c62828"
        ax.hlines(g, wi - 0.45, wi + 0.45, colors=color, linestyles="--", linewidth=2, zorder=3)
        # Under the workload's name, where no bar or value label can hide it.
        ax.annotate(goal_label(w) + (": met" if met else ": missed"), (wi, 0), xytext=(0, -34),
                    textcoords="offset points", ha="center", va="top", fontsize=8, color=color,
                    fontweight="bold")
    ax.axhline(1.0, color="black", linewidth=0.8, zorder=1)
    ax.set_xticks(range(len(shown)))
    ax.set_xticklabels([LABELS.get(w["name"], w["name"]) for w in shown])
    ax.set_ylabel("median IOPS ratio to raw O_DIRECT (\u00d7)")
    ax.set_ylim(0, top * 1.18)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.set_title("Throughput per workload and configuration" + ("\n" + subtitle if subtitle else ""), fontsize=11)
    handles, labels = ax.get_legend_handles_labels()
    if drawn["goals"]:
        from matplotlib.lines import Line2D
        handles.append(Line2D([], [], color="#1b7f3b", linestyle="--", linewidth=2))
        labels.append("goal (green met, red missed)")
    ax.legend(handles, labels, fontsize=8, loc="upper left", ncol=len(handles))
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return drawn


def outcome_pcts(p):
    """(hit, late, waste) % from a workload's "prefetch" object, or None."""
    if not isinstance(p, dict):
        return None
    pcts = [num(p.get(k)) for k in ("hit_pct", "late_pct", "waste_pct")]
    if all(v is not None for v in pcts):
        return tuple(pcts)
    demand = num(p.get("demand_blocks"))
    hits, late, wasted = (num(p.get(k)) for k in ("hits", "late", "wasted"))
    if demand and None not in (hits, late, wasted):
        resolved = hits + late + wasted
        return (100.0 * hits / demand, 100.0 * late / demand, 100.0 * wasted / resolved if resolved else 0.0)
    return None


def plot_outcomes(workloads, out_png, subtitle=""):
    """Grouped bars hit / late / waste % per workload. Returns {workload: (hit, late, waste)} or None."""
    data = [(w, outcome_pcts(w.get("prefetch"))) for w in workloads]
    data = [(w, p) for w, p in data if p is not None]
    if not data:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(8.0, 1.4 * len(data) + 3), 5.0), dpi=110)
    kinds = [("hit %", "#2a9d50"), ("late %", "#f2a541"), ("waste %", "#c62828")]
    for ki, (label, color) in enumerate(kinds):
        xs = [i - 0.3 + 0.2 * (ki + 0.5) for i in range(len(data))]
        ys = [p[ki] for _, p in data]
        bars = ax.bar(xs, ys, 0.19, label=label, color=color, edgecolor="black", linewidth=0.4, zorder=2)
        ax.bar_label(bars, labels=["%.0f" % y for y in ys], fontsize=7.5, padding=2)
    ax.set_xticks(range(len(data)))
    ax.set_xticklabels([LABELS.get(w["name"], w["name"]) for w, _ in data])
    ax.set_ylabel("% (hit, late: of demand 4 KiB blocks; waste: of prefetched blocks)", fontsize=8.5)
    ax.set_ylim(0, 112)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.set_title("Prefetch outcomes per workload (aether)" + ("\n" + subtitle if subtitle else ""), fontsize=11)
    ax.legend(fontsize=8, loc="upper right", ncol=3)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return {w["name"]: p for w, p in data}


def load_samples(path, device=None):
    """Reads a SAMPLES.jsonl file: returns (device, samples sorted by t, phases [(t, name)])."""
    samples, markers = [], []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InputError("cannot read %s: %s" % (path, e.strerror or e))
    except UnicodeDecodeError as e:
        raise InputError("%s is not UTF-8 text: %s" % (path, e))
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            o = json.loads(s)
        except ValueError as e:
            raise InputError("%s line %d is not JSON: %s" % (path, i, e))
        if not isinstance(o, dict):
            raise InputError("%s line %d is not a JSON object" % (path, i))
        if "phase" in o:
            if not isinstance(o["phase"], str) or (num(o.get("t")) is None and num(o.get("unix_time")) is None):
                raise InputError("%s line %d: a phase marker needs a name and \"t\" or \"unix_time\"" % (path, i))
            markers.append(o)
        elif isinstance(o.get("device"), str) and num(o.get("t")) is not None:
            samples.append(o)
        else:
            raise InputError("%s line %d: neither a sample (\"device\", \"t\") nor a phase marker" % (path, i))
    if not samples:
        raise InputError("%s has no samples" % path)
    counts = {}
    for o in samples:
        counts[o["device"]] = counts.get(o["device"], 0) + 1
    if device is None:
        device = max(sorted(counts), key=lambda d: counts[d])
    elif device not in counts:
        raise InputError("%s has no samples of device %s (it has: %s)" % (path, device, ", ".join(sorted(counts))))
    samples = sorted((o for o in samples if o["device"] == device), key=lambda o: num(o["t"]))
    # Phase markers by wall clock are placed on aether-stat's clock through the samples' unix_time.
    offsets = [num(o.get("unix_time")) - num(o["t"]) for o in samples if num(o.get("unix_time")) is not None]
    phases = []
    for m in markers:
        if num(m.get("t")) is not None:
            phases.append((num(m["t"]), m["phase"]))
        elif offsets:
            phases.append((num(m["unix_time"]) - sorted(offsets)[len(offsets) // 2], m["phase"]))
        else:
            raise InputError("%s: phase %r is given by unix_time but the samples have none" % (path, m["phase"]))
    phases.sort()
    return device, samples, phases


def plot_timeseries(device, samples, phases, out_png):
    """Five panels against time: IOPS, hit % (with late % and gate open %), phi, eps, depth.
    A series absent from every sample is left out; a panel left empty says so. Returns the panel names."""
    plt = _pyplot()
    t = [num(o["t"]) for o in samples]
    panels = [("reads_per_s", "IOPS\n(reads/s)", "#4c72b0"), ("hit_pct", "hit % /\ngate open %", "#2a9d50"),
              ("phi", "\u03c6 (rad)", "#8172b3"), ("eps", "\u03b5 eff", "#dd8452"), ("depth", "depth cap", "#555555")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 8.5), dpi=110, sharex=True)
    end = max(t) if t else 0.0
    for ax, (key, label, color) in zip(axes, panels):
        series = [(key, key.replace("_pct", " %"), color, "-")]
        if key == "hit_pct":
            series += [("late_pct", "late %", "#f2a541", "-"), ("gate_open_pct", "gate open %", "#4c72b0", "--")]
            ax.set_ylim(-3, 103)
        drawn = []
        for k, name, col, style in series:
            ys = [num(o.get(k)) for o in samples]
            if all(y is None for y in ys):
                continue
            ax.plot(t, [float("nan") if y is None else y for y in ys], color=col, linestyle=style,
                    linewidth=1.6 if k == key else 1.2, marker="o" if k == key else None, markersize=2.5, label=name)
            drawn.append(name)
        if len(drawn) > 1 or (drawn and drawn[0] != series[0][1]):
            ax.legend(fontsize=7, loc="upper right", ncol=len(drawn))
        if series[0][1] not in drawn:
            ax.text(0.01, 0.9, "no %s in the samples" % key, transform=ax.transAxes, ha="left", va="top",
                    fontsize=9, color="#666666", bbox=dict(facecolor="white", edgecolor="none", alpha=0.85))
        if key == "depth":
            ax.set_ylim(bottom=0)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
        for i, (p0, name) in enumerate(phases):
            p1 = phases[i + 1][0] if i + 1 < len(phases) else end
            if i % 2 == 0:
                ax.axvspan(p0, p1, color="#eeeeee", zorder=0)
            ax.axvline(p0, color="#888888", linewidth=0.8, linestyle=":")
    for i, (p0, name) in enumerate(phases):
        p1 = phases[i + 1][0] if i + 1 < len(phases) else end
        axes[0].annotate(name, ((p0 + p1) / 2, 1.02), xycoords=("data", "axes fraction"), ha="center",
                         fontsize=9, fontweight="bold")
    axes[-1].set_xlabel("time (s)")
    fig.suptitle("aether on %s, sampled once per interval by aether-stat" % device, fontsize=11)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return [p[0] for p in panels]


def main(argv=None):
    ap = argparse.ArgumentParser(description="Plots for make bench (see the docstring of this script).")
    ap.add_argument("results", nargs="?", help="the bench JSON (build/bench/results.json)")
    ap.add_argument("--timeseries", metavar="SAMPLES.jsonl", help="aether-stat --json lines and phase markers")
    ap.add_argument("--device", help="device to plot from SAMPLES (default: the one with most samples)")
    ap.add_argument("--outdir", help="where PNGs go (default: next to the input)")
    args = ap.parse_args(argv)
    if not args.results and not args.timeseries:
        ap.error("give RESULTS.json, --timeseries SAMPLES.jsonl, or both")
    outdir = args.outdir or os.path.dirname(os.path.abspath(args.results or args.timeseries))
    try:
        _pyplot()
    except ImportError as e:
        note("matplotlib is missing (%s): run scripts/setup.sh (Debian package python3-matplotlib) "
             "and use /usr/bin/python3" % e)
        return 3
    try:
        # Read and check every input before writing anything.
        doc = load_json(args.results) if args.results else None
        workloads = normalize_results(doc, args.results) if args.results else None
        series = load_samples(args.timeseries, args.device) if args.timeseries else None
        if not os.path.isdir(outdir):
            raise InputError("output directory %s does not exist" % outdir)
    except InputError as e:
        note(str(e))
        return 1
    written = []
    if workloads is not None:
        sub = _subtitle(doc)
        png = os.path.join(outdir, "throughput.png")
        if plot_throughput(workloads, png, sub):
            written.append(png)
        else:
            note("no IOPS in %s: throughput.png not written" % args.results)
        png = os.path.join(outdir, "prefetch-outcomes.png")
        if plot_outcomes(workloads, png, sub):
            written.append(png)
        else:
            note("no workload in %s has prefetch outcomes: prefetch-outcomes.png not written" % args.results)
    if series is not None:
        png = os.path.join(outdir, "timeseries.png")
        plot_timeseries(*series, png)
        written.append(png)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
