# SPDX-License-Identifier: GPL-2.0
"""Host tests of scripts/plot-bench.py, run by scripts/test.sh with Debian's /usr/bin/python3:

    /usr/bin/python3 -m unittest discover -s scripts/tests -v

The PNGs are checked for what a reader needs: a PNG signature, a sane size, and
pixels in the colours of the bars and lines that carry the data.
"""

import importlib.util
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "plot-bench.py")
PY = "/usr/bin/python3"

spec = importlib.util.spec_from_file_location("plot_bench", SCRIPT)
pb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pb)

import matplotlib.image  # noqa: E402  (Debian's python3-matplotlib, which brings numpy)
import numpy  # noqa: E402

WORKLOADS = [
    ("seq", {"raw": 4000, "linux_buffered": 19400, "gate_off": 3950, "aether": 21000}, (92.1, 3.2, 1.4)),
    ("stride", {"raw": 4100, "linux_buffered": 3900, "gate_off": 4000, "aether": 13000}, (81.0, 6.0, 9.5)),
    ("randread_qd1", {"raw": 4200, "linux_buffered": 3000, "gate_off": 4150, "aether": 4160}, (0.2, 0.0, 40.0)),
    ("randread_qd32", {"raw": 30000, "gate_off": 29500, "aether": 29000}, (0.1, 0.0, 35.0)),
    ("loaders4", {"raw": 2000, "linux_buffered": 3500, "gate_off": 1980, "aether": 4500}, (88.0, 4.0, 2.0)),
    ("interleaved8", {"raw": 3800, "linux_buffered": 6000, "gate_off": 3700, "aether": 9000}, (70.0, 10.0, 12.0)),
    ("mixed70_30", {"raw": 3000, "gate_off": 2950, "aether": 3400}, (30.0, 5.0, 20.0)),
]


def schema2(workloads=WORKLOADS):
    return {"schema": "aether-bench/2", "kernel": "6.12.117", "accel": "tcg", "rounds": 5, "seconds_per_run": 5,
            "workloads": [{"name": n, "median_iops": iops, "prefetch": {"hit_pct": h, "late_pct": l, "waste_pct": w}}
                          for n, iops, (h, l, w) in workloads]}


# The shape scripts/guest/bench.sh writes today (schema 1).
SCHEMA1 = {"benchmark": "fio randread", "kernel": "6.12.117", "accel": "tcg", "rounds": 5, "seconds_per_run": 5,
           "results": [
               {"iodepth": 1, "median_iops": {"raw": 4000, "linear": 3900, "aether_off": 3850, "aether": 3800},
                "median_ratio": {"aether/raw": 0.95, "linear/raw": 0.975, "aether/linear": 0.97,
                                 "aether/aether_off": 0.99}, "meets_goal": False},
               {"iodepth": 32, "median_iops": {"raw": 30000, "linear": 29500, "aether_off": 29400, "aether": 29700},
                "median_ratio": {"aether/raw": 0.99, "linear/raw": 0.98, "aether/linear": 1.0,
                                 "aether/aether_off": 1.01}, "meets_goal": True}]}


def samples_jsonl():
    """A phase-changing run as aether-stat --json lines plus phase markers by unix_time."""
    t0 = 1764870000.0
    phases = [("sequential", 0), ("random", 15), ("strided", 30), ("sequential", 45)]
    lines = ["# phase-changing run (synthetic)"]
    lines += [json.dumps({"phase": n, "unix_time": t0 + s}) for n, s in phases]
    for i in range(1, 61):
        ph = [p for p in phases if p[1] < i][-1][0]
        v = {"sequential": (20000, 93, 0.0, 0.5, 32), "random": (4100, 0.5, 0.3, 0.75, 4),
             "strided": (12000, 80, 0.785, 0.55, 16)}[ph]
        lines.append(json.dumps({"t": i, "unix_time": t0 + i + 0.2, "device": "fast", "interval_s": 1.0,
                                 "reads_per_s": v[0] + 300 * math.sin(i), "hit_pct": v[1], "late_pct": 2.0,
                                 "phi": v[2], "eps": v[3], "depth": v[4]}))
        # A second, idle device: the busiest one is plotted by default.
        if i % 10 == 0:
            lines.append(json.dumps({"t": i, "device": "idle", "reads_per_s": 0, "hit_pct": None}))
    return "\n".join(lines) + "\n"


def run(*args):
    return subprocess.run([PY, SCRIPT, *args], capture_output=True, text=True, timeout=300)


def png_size(path):
    """(width, height) from the IHDR chunk; fails unless the file is a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise AssertionError("%s is not a PNG" % path)
    return struct.unpack(">II", head[16:24])


def pixels_near(path, rgb_hex, tol=0.06):
    """How many pixels of the image have (about) the colour rgb_hex."""
    img = matplotlib.image.imread(path)[:, :, :3]
    want = numpy.array([int(rgb_hex[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int(numpy.all(numpy.abs(img - want) <= tol, axis=2).sum())


class PlotBench(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name, content):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        return path

    def assert_png(self, path, min_w=800, min_h=450):
        self.assertTrue(os.path.isfile(path), path)
        w, h = png_size(path)
        self.assertGreaterEqual(w, min_w)
        self.assertGreaterEqual(h, min_h)
        self.assertGreater(os.path.getsize(path), 15000, "suspiciously small: %s" % path)

    def test_full_results_give_both_bar_plots(self):
        res = self.write("results.json", schema2())
        r = run(res)
        self.assertEqual(r.returncode, 0, r.stderr)
        tp, po = os.path.join(self.dir, "throughput.png"), os.path.join(self.dir, "prefetch-outcomes.png")
        self.assertEqual(r.stdout.split(), [tp, po])
        self.assertEqual(r.stderr, "")
        self.assert_png(tp)
        self.assert_png(po)
        # The bars are there: aether's green and linux buffered's blue; the outcome plot's waste red.
        self.assertGreater(pixels_near(tp, pb.COLORS["aether"]), 5000)
        self.assertGreater(pixels_near(tp, pb.COLORS["linux_buffered"]), 2000)
        self.assertGreater(pixels_near(po, "#c62828"), 2000)

    def test_goal_lines_in_raw_units_and_verdicts(self):
        wls = pb.normalize_results(schema2())
        drawn = pb.plot_throughput(wls, os.path.join(self.dir, "t.png"))
        self.assertEqual(drawn["configs"], ["raw", "linux_buffered", "gate_off", "aether"])
        g = drawn["goals"]
        # seq's goal is 1.0 x linux buffered = 19400/4000 x raw; the others are multiples of raw.
        self.assertAlmostEqual(g["seq"], 4.85)
        self.assertEqual((g["stride"], g["loaders4"], g["interleaved8"]), (3.0, 2.0, 3.0))
        self.assertEqual((g["randread_qd1"], g["randread_qd32"]), (0.98, 0.98))
        self.assertNotIn("mixed70_30", g)
        self.assertEqual(drawn["met"], {"seq": True, "stride": True, "randread_qd1": True, "randread_qd32": False,
                                        "loaders4": True, "interleaved8": False})

    def test_missing_workloads_and_configs_are_tolerated(self):
        doc = schema2([("interleaved8", {"raw": 100, "aether": 250}, (1, 2, 3)),
                       ("seq", {"raw": 4000, "aether": 8000}, (1, 2, 3)),
                       ("my_new_workload", {"aether": 5.0}, (1, 2, 3))])
        for w in doc["workloads"]:
            del w["prefetch"]
        doc["workloads"][1]["median_ratio"] = {"aether/raw": 1.9}
        del doc["kernel"]
        res = self.write("results.json", doc)
        r = run(res)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), [os.path.join(self.dir, "throughput.png")])
        self.assertIn("prefetch-outcomes.png not written", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "prefetch-outcomes.png")))
        self.assert_png(os.path.join(self.dir, "throughput.png"))
        drawn = pb.plot_throughput(pb.normalize_results(doc), os.path.join(self.dir, "t.png"))
        # Canonical order; the workload without raw has no ratio and is left out; seq's goal needs
        # linux buffered, which did not run, so only interleaved8's goal can be drawn.
        self.assertEqual(drawn["workloads"], ["seq", "interleaved8"])
        self.assertEqual(drawn["configs"], ["raw", "aether"])
        self.assertEqual(drawn["goals"], {"interleaved8": 3.0})
        self.assertEqual(drawn["met"], {"interleaved8": False})
        self.assertEqual(pb.ratio_to(pb.normalize_results(doc)[0], "aether", "raw"), 1.9, "median_ratio wins")

    def test_todays_bench_json_is_read(self):
        res = self.write("results.json", SCHEMA1)
        r = run(res)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_png(os.path.join(self.dir, "throughput.png"))
        drawn = pb.plot_throughput(pb.normalize_results(SCHEMA1), os.path.join(self.dir, "t.png"))
        self.assertEqual(drawn["workloads"], ["randread_qd1", "randread_qd32"])
        self.assertEqual(drawn["configs"], ["raw", "linear", "gate_off", "aether"])
        self.assertEqual(drawn["met"], {"randread_qd1": False, "randread_qd32": True})

    def test_outcome_percentages_from_counts(self):
        self.assertEqual(pb.outcome_pcts({"demand_blocks": 200, "hits": 100, "late": 20, "wasted": 80}),
                         (50.0, 10.0, 40.0))
        self.assertEqual(pb.outcome_pcts({"hit_pct": 1, "late_pct": 2, "waste_pct": 3}), (1.0, 2.0, 3.0))
        self.assertIsNone(pb.outcome_pcts({"hit_pct": 1, "late_pct": None, "waste_pct": 3}))
        self.assertIsNone(pb.outcome_pcts({"demand_blocks": 0, "hits": 0, "late": 0, "wasted": 0}))

    def test_timeseries_with_phases(self):
        ts = self.write("ts.jsonl", samples_jsonl())
        r = run("--timeseries", ts)
        self.assertEqual(r.returncode, 0, r.stderr)
        png = os.path.join(self.dir, "timeseries.png")
        self.assertEqual(r.stdout.split(), [png])
        self.assert_png(png, 1000, 800)
        self.assertGreater(pixels_near(png, "#2a9d50"), 500, "hit % line")
        self.assertGreater(pixels_near(png, "#8172b3"), 500, "phi line")
        dev, samples, phases = pb.load_samples(ts)
        self.assertEqual(dev, "fast")
        self.assertEqual(len(samples), 60)
        # Markers by wall clock land on aether-stat's clock (samples' unix_time - t = t0 + 0.2).
        self.assertEqual([n for _, n in phases], ["sequential", "random", "strided", "sequential"])
        self.assertAlmostEqual(phases[1][0], 14.8)

    def test_timeseries_from_real_aether_stat_output(self):
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        b = subprocess.run(["cargo", "build", "-q", "-p", "aether-stat"], cwd=ROOT, capture_output=True, text=True)
        self.assertEqual(b.returncode, 0, b.stderr)
        root = os.path.join(self.dir, "debug", "aether")
        os.makedirs(os.path.join(root, "fast"))
        with open(os.path.join(root, "fast", "stats"), "w") as f:
            f.write("reads: 10\nread_bytes: 40960\ngate_phi: 0.5\ngate_epsilon_eff: 0.625\ndepth_cap: 8\n")
        st = subprocess.run([os.path.join(target, "debug", "aether-stat"), "--root", root, "--json", "--count", "3",
                             "--interval", "0.1"], capture_output=True, text=True, timeout=60)
        self.assertEqual(st.returncode, 0, st.stderr)
        self.assertEqual(len(st.stdout.splitlines()), 3)
        ts = self.write("stat.jsonl", '{"phase": "only", "t": 0}\n' + st.stdout)
        r = run("--timeseries", ts, "--outdir", self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_png(os.path.join(self.dir, "timeseries.png"), 1000, 800)

    def test_bad_input_is_one_line_and_writes_nothing(self):
        good = self.write("results.json", schema2())
        cases = [
            ([self.write("bad.json", "{not json")], "is not valid JSON"),
            ([self.write("list.json", "[1, 2]")], "top level is not a JSON object"),
            ([self.write("nowl.json", {"workloads": [{"median_iops": {}}]})], "a workload has no \"name\""),
            ([os.path.join(self.dir, "missing.json")], "cannot read"),
            ([good, "--timeseries", self.write("s1.jsonl", '{"t": 1, "device": "d"}\nnot json\n')],
             "line 2 is not JSON"),
            ([good, "--timeseries", self.write("s2.jsonl", '{"t": 1}\n')], "neither a sample"),
            (["--timeseries", self.write("s3.jsonl", '{"t": 1, "device": "d"}\n'), "--device", "x"],
             "no samples of device x"),
            (["--timeseries", self.write("s4.jsonl", '{"phase": "a", "unix_time": 5}\n{"t": 1, "device": "d"}\n')],
             "samples have none"),
            (["--timeseries", self.write("s5.jsonl", "# nothing\n")], "has no samples"),
            ([good, "--outdir", os.path.join(self.dir, "nope")], "does not exist"),
        ]
        for args, msg in cases:
            r = run(*args)
            self.assertEqual(r.returncode, 1, (args, r.stderr))
            self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
            self.assertIn(msg, r.stderr)
            self.assertEqual(r.stdout, "")
        self.assertEqual([f for f in os.listdir(self.dir) if f.endswith(".png")], [])
        self.assertEqual(run().returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
