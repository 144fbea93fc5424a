#!/usr/bin/env python3
"""Reads what `bench_spurious --save-models --save-features --records` writes the way a researcher would, with the
PyPI `safetensors` package, numpy, csv and pandas, and checks it against the run's own results JSON:

- every model file loads; its tensors have PyTorch's ConvBase names and shapes with the seed first; its metadata
  names the method, p, the seeds and the configuration;
- a numpy forward pass of every seed's model on that seed's training set and three test sets (the inputs from
  `bench_spurious dataset --seed-index k` and the shipped MNIST-1D) predicts as many samples right as the per-seed
  accuracies in results.json. A sample whose two largest logits are within 1e-4 may flip between numpy's and our
  summation order; such flips are counted and allowed (at most 2 per set), any other difference fails;
- the features files hold the numpy conv3 output of the erm / erm-base models, the labels, and the planted mask
  `bench_spurious dataset` reports, and the models' own heads on those features give the same predictions;
- the long-format records (CSV and JSON Lines) hold exactly the final metrics and curves of results.json.

Usage: check_artifacts.py BENCH_SPURIOUS SOURCE_DIR WORK_DIR
"""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

SETS = ["train", "test_clean", "test_aligned", "test_conflicting"]
TIE = 1e-4
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL:", what, flush=True)


def conv1d_relu(x, w, b, stride=2, pad=1):
    """x (n, cin, L), w (cout, cin, k): PyTorch's Conv1d, then ReLU."""
    n, cin, length = x.shape
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
    lout = (length + 2 * pad - k) // stride + 1
    idx = np.arange(lout)[:, None] * stride + np.arange(k)[None, :]  # (lout, k)
    windows = xp[:, :, idx]  # (n, cin, lout, k)
    out = np.einsum("nclk,ock->nol", windows.astype(np.float64), w.astype(np.float64)) + b[None, :, None]
    return np.maximum(out, 0.0)


def features_of(model, s, x):
    h = x[:, None, :].astype(np.float64)
    for layer in ("conv1", "conv2", "conv3"):
        h = conv1d_relu(h, model[layer + ".weight"][s], model[layer + ".bias"][s])
    return h.reshape(len(x), -1)  # PyTorch's flatten(1): index c * L3 + l


def head(model, s, z):
    return z @ model["linear.weight"][s].astype(np.float64).T + model["linear.bias"][s]


def correct_and_ties(logits, y):
    top2 = np.sort(logits, axis=1)[:, -2:]
    near_tie = (top2[:, 1] - top2[:, 0]) <= TIE * np.maximum(1.0, np.abs(top2[:, 1]))
    return int((logits.argmax(1) == y).sum()), int(near_tie.sum())


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main():
    bench, source, work = sys.argv[1], sys.argv[2], sys.argv[3]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    seeds = 3
    small = ["--seeds", str(seeds), "--steps", "120", "--eval-every", "40", "--batch", "50", "--afr-epochs", "20",
             "--afr-gammas", "0,4", "--afr-lambdas", "0,0.1", "--dfr-subsamples", "2", "--quiet"]
    out = lambda name: os.path.join(work, name)
    run([bench, *small, "--out", out("r.json"), "--save-models", out("models"), "--save-features", out("features"),
         "--records", out("records.csv")])
    run([bench, *small, "--methods", "erm,dfr", "--no-saliency", "--out", out("r2.json"), "--records",
         out("records.jsonl")])
    results = json.load(open(out("r.json")))
    p = results["config"]["spurious"]["p"]
    methods = results["config"]["methods"]

    # Inputs of every seed: the shipped clean set (D_base, test_clean) and each seed's D_sp and shifted test sets.
    data = os.path.join(source, "data", "mnist1d")
    x_base = np.fromfile(os.path.join(data, "x_train.f32"), "<f4").reshape(-1, 40)
    y_train = np.fromfile(os.path.join(data, "y_train.i32"), "<i4")
    x_test = np.fromfile(os.path.join(data, "x_test.f32"), "<f4").reshape(-1, 40)
    y_test = np.fromfile(os.path.join(data, "y_test.i32"), "<i4")
    per_seed = []
    for k in range(seeds):
        d = out("dataset%d" % k)
        run([bench, "dataset", "--p", str(p), "--seed-index", str(k), "--out", d])
        load = lambda n: np.load(os.path.join(d, n))
        per_seed.append({"train": load("x_train.npy"), "test_clean": x_test, "test_aligned": load("x_test_aligned.npy"),
                         "test_conflicting": load("x_test_conflicting.npy"), "planted_train": load("planted_train.npy"),
                         "planted_conflicting": load("planted_test_conflicting.npy")})

    runs = {(r["method"], r["seed_index"]): r for r in results["runs"]}
    flips = 0
    for method in methods:
        path = out(os.path.join("models", "%s.p%s.safetensors" % (method, p)))
        model = load_file(path)
        C = results["config"]["channels"]
        expect = {"conv1.weight": (seeds, C, 1, 5), "conv1.bias": (seeds, C), "conv2.weight": (seeds, C, C, 3),
                  "conv2.bias": (seeds, C), "conv3.weight": (seeds, C, C, 3), "conv3.bias": (seeds, C),
                  "linear.weight": (seeds, 10, 5 * C), "linear.bias": (seeds, 10)}
        check({k: v.shape for k, v in model.items()} == expect, "%s: tensors %s" % (path, {k: v.shape for k, v in model.items()}))
        with safe_open(path, "np") as f:
            meta = f.metadata()
        check(meta["method"] == method and float(meta["p"]) == p, "%s: metadata method/p %s" % (path, meta))
        check(json.loads(meta["seed_indices"]) == list(range(seeds)), "%s: seed_indices" % path)
        check(json.loads(meta["config"]) == results["config"], "%s: config differs from results.json's" % path)
        check(meta["schema"] == "spurious-bench/model/v1", "%s: schema" % path)
        for s in range(seeds):
            for set_name in SETS:
                x = x_base if (set_name == "train" and method == "erm-base") else per_seed[s][set_name]
                y = y_train if set_name == "train" else y_test
                got, ties = correct_and_ties(head(model, s, features_of(model, s, x)), y)
                want = round(runs[(method, s)]["metrics"][set_name]["accuracy"] * len(y))
                differ = abs(got - want)
                flips += differ
                check(differ <= min(ties, 2), "%s seed %d %s: numpy %d right, results.json %d (%d near-ties)" % (
                    method, s, set_name, got, want, ties))

    for method in [m for m in methods if m in ("erm", "erm-base")]:
        path = out(os.path.join("features", "%s.p%s.features.safetensors" % (method, p)))
        feats = load_file(path)
        model = load_file(out(os.path.join("models", "%s.p%s.safetensors" % (method, p))))
        for s in range(seeds):
            for set_name in SETS:
                x = x_base if (set_name == "train" and method == "erm-base") else per_seed[s][set_name]
                z = feats[set_name + ".features"][s]
                ref = features_of(model, s, x)
                err = np.abs(z - ref).max() / max(1e-6, np.abs(ref).max())
                check(np.isfinite(z).all() and err < 1e-4, "%s seed %d %s features: max rel error %g" % (path, s, set_name, err))
                y = y_train if set_name == "train" else y_test
                check((feats[set_name + ".labels"] == y).all(), "%s %s labels" % (path, set_name))
                got, _ = correct_and_ties(head(model, s, z.astype(np.float64)), y)
                want = round(runs[(method, s)]["metrics"][set_name]["accuracy"] * len(y))
                check(abs(got - want) <= 2, "%s seed %d %s: head on saved features %d right, results %d" % (path, s, set_name, got, want))
                if set_name == "train":
                    planted = per_seed[s]["planted_train"] if method == "erm" else np.full(len(y), -1)
                elif set_name == "test_conflicting":
                    planted = per_seed[s]["planted_conflicting"]
                elif set_name == "test_aligned":
                    planted = y_test  # every aligned sample carries its own class's block
                else:
                    planted = np.full(len(y), -1)
                check((feats[set_name + ".planted_class"][s] == planted).all(), "%s seed %d %s planted_class" % (path, s, set_name))
                check((feats[set_name + ".planted"][s] == (planted >= 0)).all(), "%s seed %d %s planted mask" % (path, s, set_name))

    # Records: CSV of the full run and JSON Lines of the second hold results.json's numbers, row for row.
    def check_records(rows, res, name):
        finals, curves = {}, {}
        for r in rows:
            key = (r["method"], int(r["seed_index"]), r["set"], r["metric"], r["group"])
            v = None if r["value"] in ("", None) else float(r["value"])
            if r["point"] == "final":
                finals[key] = v
            else:
                curves[key + (int(r["step"]),)] = v
        n_rows = 0
        for run_ in res["runs"]:
            m, s = run_["method"], run_["seed_index"]
            for set_name in SETS:
                fm = run_["metrics"][set_name]
                expect = {("accuracy", "all"): fm["accuracy"], ("worst_group_accuracy", "all"): fm["worst_group_accuracy"],
                          ("loss", "all"): fm["loss"]}
                for g, a in enumerate(fm["per_group_accuracy"]):
                    expect[("accuracy", str(g))] = a
                if "shortcut_reliance" in run_:
                    expect[("shortcut_reliance", "all")] = run_["shortcut_reliance"][set_name]
                for (metric, group), v in expect.items():
                    got = finals.get((m, s, set_name, metric, group), "missing")
                    check(got != "missing" and (got is None) == (v is None) and (v is None or abs(got - v) <= 1e-8 * max(1, abs(v))),
                          "%s: final %s %d %s %s %s: %s vs %s" % (name, m, s, set_name, metric, group, got, v))
                n_rows += len(expect)
                c = run_["curves"]
                for i, step in enumerate(c["step"]):
                    got = curves.get((m, s, set_name, "accuracy", "all", step), "missing")
                    check(got != "missing" and abs(got - c[set_name]["accuracy"][i]) <= 1e-8, "%s: curve %s %d %s step %d" % (name, m, s, set_name, step))
                    for g, a in enumerate(c[set_name]["per_group_accuracy"][i]):
                        got = curves.get((m, s, set_name, "accuracy", str(g), step), "missing")
                        check(got != "missing" and (a is None or abs(got - a) <= 1e-8), "%s: curve group %d" % (name, g))
                    n_rows += 3 + len(c[set_name]["per_group_accuracy"][i])
        check(len(rows) == n_rows, "%s: %d rows, expected %d" % (name, len(rows), n_rows))

    with open(out("records.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    check(list(rows[0].keys()) == ["p", "seed_index", "method", "set", "point", "step", "metric", "group", "value"],
          "records.csv columns %s" % list(rows[0].keys()))
    check(all(float(r["p"]) == p for r in rows), "records.csv: p column")
    check_records(rows, results, "records.csv")
    with open(out("records.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    check_records(rows, json.load(open(out("r2.json"))), "records.jsonl")

    # What docs/python.md promises: pandas.read_csv and one groupby give a curve with a seed band per method.
    import pandas as pd
    r = pd.read_csv(out("records.csv"))
    c = r[(r.point == "curve") & (r.set == "test_clean") & (r.metric == "accuracy") & (r.group == "all")]
    q = c.groupby(["method", "step"]).value.quantile([0.1, 0.5, 0.9]).unstack()
    curve_methods = sorted({run_["method"] for run_ in results["runs"] if run_["curves"]["step"]})
    check(sorted(q.index.get_level_values(0).unique()) == curve_methods, "pandas: methods with curves %s" % list(q.index))
    check(len(q) == sum(len(next(run_ for run_ in results["runs"] if run_["method"] == m)["curves"]["step"])
                        for m in curve_methods), "pandas: one band point per (method, step)")
    check(bool(((q[0.1] <= q[0.5]) & (q[0.5] <= q[0.9])).all()), "pandas: band quantiles out of order")

    print("check_artifacts: %d near-tie flips between numpy and results.json" % flips)
    if failures:
        print("check_artifacts: %d failures" % len(failures))
        return 1
    print("check_artifacts: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
