#!/usr/bin/env python3
"""Figures and an HTML report from a bench_spurious results file.

Usage:
  python3 scripts/report.py RESULTS.json [--dataset DIR] [--base DIR] [--sweep-p P] --out OUTDIR

Writes into OUTDIR: accuracy_by_method.svg, saliency_<set>.svg, afr_p_histogram.svg,
cost_per_method.svg, curves.svg, per_group_curves.svg, p_sweep.svg (sweep files), embedding_pca.svg
(with --dataset) and report.html (the tables and every figure inlined). A figure whose data the file
lacks is skipped. What the page shows: docs/report.md. Needs numpy and matplotlib only (Debian: python3-numpy, python3-matplotlib).
The format is docs/results-format.md; what is computed is ../shared/docs/study.md sections 4-6.
"""
import argparse
import html
import json
import os
import re
import sys
import warnings
from io import StringIO
from pathlib import Path

import numpy as np
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

SCHEMA = "spurious-bench/results/v1"
DATASET_SCHEMA = "spurious-bench/dataset/v1"
TEST_SETS = ["test_clean", "test_aligned", "test_conflicting"]
SALIENCY_SETS = ["test_clean", "test_aligned", "train"]
STAGES = ["erm_training", "periodic_evaluation", "features", "head_fit", "final_evaluation", "saliency"]
STAGE_COLOURS = {"erm_training": "#4c72b0", "periodic_evaluation": "#937860", "features": "#dd8452",
                 "head_fit": "#55a868", "final_evaluation": "#c44e52", "saliency": "#8172b3"}
UNLISTED_COLOUR = "#c8c8c8"
METHOD_COLOURS = {"erm-base": "#7f7f7f", "erm": "#1f77b4", "dfr": "#2ca02c", "dfr-source": "#98df8a",
                  "afr": "#d62728", "afr-source": "#ff9896",
                  "probe-erm": "#2ca02c", "probe-base": "#7f7f7f", "afr-oracle": "#d62728"}
# Upper bounds of a head-only fix (issue 14), not methods: drawn dashed, in the colour of what they bound.
BOUNDS = {"probe-erm", "probe-base", "afr-oracle"}
BAND_PERCENTILES = (10, 90)  # the seed band of the per-class curves
REPO = Path(__file__).resolve().parent.parent

plt.rcParams.update({
    "font.size": 11, "axes.titlesize": 12, "figure.titlesize": 13, "legend.fontsize": 10,
    "svg.fonttype": "none",   # text stays text: small files, selectable in the report
    "svg.hashsalt": "spurious-bench",  # same input, same SVG bytes
    "axes.spines.top": False, "axes.spines.right": False,
})


class ReportError(Exception):
    pass


# ---------------------------------------------------------------- loading

def load_results(path):
    try:
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file")
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot read: {e}")
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON: {e}")
    if not isinstance(r, dict):
        raise ReportError(f"{path}: not a results object")
    if r.get("schema") != SCHEMA:
        raise ReportError(f"{path}: schema is {r.get('schema')!r}, expected {SCHEMA!r}")
    for key in ("config", "environment"):
        if not isinstance(r.get(key), dict):
            raise ReportError(f"{path}: missing '{key}'")
    if "sweep" in r:
        if not isinstance(r["sweep"], list) or not r["sweep"]:
            raise ReportError(f"{path}: 'sweep' is not a non-empty list")
        entries = r["sweep"]
    else:
        entries = [r]
    for e in entries:
        for key in ("runs", "summary", "timing", "cross_seed"):
            if key not in e:
                raise ReportError(f"{path}: missing '{key}'" + (f" in sweep entry p={e.get('p')}"
                                                                if "sweep" in r else ""))
    check_curves(path, r)
    return r


def is_accuracy(v):
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1)


def check_curves(path, r):
    """Every curve has one entry per evaluation step; per_group_accuracy entries one accuracy (or null) per class."""
    classes = r["config"].get("data", {}).get("classes")
    entries = [(f"sweep[{k}].", e) for k, e in enumerate(r["sweep"])] if "sweep" in r else [("", r)]
    for prefix, e in entries:
        if not isinstance(e["runs"], list):
            raise ReportError(f"{path}: {prefix}runs is not a list")
        for i, run in enumerate(e["runs"]):
            if not isinstance(run, dict):
                raise ReportError(f"{path}: {prefix}runs[{i}] is not an object")
            curves = run.get("curves")
            if not curves:
                continue
            where = f"{path}: {prefix}runs[{i}] ({run.get('method')}, seed index {run.get('seed_index')}): curves"
            if not isinstance(curves, dict) or not isinstance(curves.get("step"), list):
                raise ReportError(f"{where}.step is missing or not a list")
            n = len(curves["step"])
            for set_name, c in curves.items():
                if set_name == "step":
                    continue
                if not isinstance(c, dict):
                    raise ReportError(f"{where}.{set_name} is not an object")
                for metric, values in c.items():
                    if not isinstance(values, list) or len(values) != n:
                        got = f"{len(values)} entries" if isinstance(values, list) else "not a list"
                        raise ReportError(f"{where}.{set_name}.{metric}: {got}, expected one per step ({n})")
                for j, row in enumerate(c.get("per_group_accuracy", [])):
                    if not isinstance(row, list) or (classes and len(row) != classes):
                        raise ReportError(f"{where}.{set_name}.per_group_accuracy[{j}]: not a list of {classes} "
                                          "values (one per class)")
                    if not all(is_accuracy(v) for v in row):
                        raise ReportError(f"{where}.{set_name}.per_group_accuracy[{j}]: a value is neither an "
                                          "accuracy in [0, 1] nor null")


def pick_view(r, sweep_p):
    """The one p whose runs, summary, timing and cross_seed the per-method figures and tables show."""
    if "sweep" not in r:
        return dict(r, p=r["config"]["spurious"]["p"])
    ps = [e["p"] for e in r["sweep"]]
    if sweep_p is None:
        sweep_p = 0.9 if any(abs(p - 0.9) < 1e-9 for p in ps) else max(ps)
    for e in r["sweep"]:
        if abs(e["p"] - sweep_p) < 1e-9:
            return e
    raise ReportError(f"--sweep-p {sweep_p}: not in the sweep (p = {', '.join(map(str, ps))})")


def method_order(r, view):
    listed = [m for m in r["config"].get("methods", []) if m in view["summary"]]
    return listed + sorted(m for m in view["summary"] if m not in listed)


def colour(method, i):
    return METHOD_COLOURS.get(method, plt.cm.tab10(i % 10))


def seed_values(view, method, set_name, metric):
    return np.array([run["metrics"][set_name][metric] for run in view["runs"]
                     if run["method"] == method and run["metrics"][set_name][metric] is not None],
                    dtype=float)


def n_seeds(r):
    return r["config"]["seeds"]


def svg_of(fig):
    buf = StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------- figures

def figure_accuracy_by_method(r, view, methods):
    metrics = [("accuracy", "accuracy"), ("worst_group_accuracy", "worst-group accuracy")]
    sets = [s for s in TEST_SETS if s in view["summary"][methods[0]]]
    fig, axes = plt.subplots(2, len(sets), figsize=(4.3 * len(sets), 7.6), sharey=True, squeeze=False)
    rng = np.random.default_rng(0)
    x = np.arange(len(methods))
    for row, (metric, label) in enumerate(metrics):
        for col, s in enumerate(sets):
            ax = axes[row][col]
            values = [seed_values(view, m, s, metric) for m in methods]
            ax.boxplot(values, positions=x, widths=0.5, showfliers=False, medianprops={"color": "0.3"},
                       boxprops={"color": "0.6"}, whiskerprops={"color": "0.6"}, capprops={"color": "0.6"})
            for i, (m, v) in enumerate(zip(methods, values)):
                ax.scatter(i - 0.1 + rng.uniform(-0.12, 0.12, len(v)), v, s=12, alpha=0.6,
                           color=colour(m, i), zorder=3, label="one seed" if i == 0 else None)
                st = view["summary"][m][s][metric]
                lo, hi = st["ci95"] if st.get("ci95") else (st["mean"], st["mean"])
                ax.errorbar(i + 0.3, st["mean"], yerr=[[st["mean"] - lo], [hi - st["mean"]]], fmt="D",
                            color="black", ms=5, capsize=3, zorder=4,
                            label="mean ± 95 % CI" if i == 0 else None)
            ax.set_xticks(x)
            ax.set_xticklabels(methods, rotation=35, ha="right")
            ax.set_ylim(-0.03, 1.03)
            ax.grid(axis="y", alpha=0.3)
            if row == 0:
                ax.set_title(s.replace("_", " "))
            if col == 0:
                ax.set_ylabel(label)
    axes[0][0].legend(loc="lower left", fontsize=9)
    fig.suptitle(f"Final accuracy per method and test set: {n_seeds(r)} seeds, p = {view['p']:g}, "
                 f"{r['config']['steps']} steps")
    fig.tight_layout()
    return svg_of(fig)


def spurious_blocks(r):
    sp, length = r["config"]["spurious"], r["config"]["data"]["length"]
    classes = r["config"]["data"]["classes"]
    return [(k * sp["block_stride"], min(length, k * sp["block_stride"] + sp["block_width"]))
            for k in range(classes)]


def figure_saliency(r, view, methods, set_name):
    """Rows normalised to sum 1: the colour is the share of class k's saliency on each feature."""
    maps = {}
    for m in methods:
        sal = view["cross_seed"].get(m, {}).get("saliency")
        if sal and set_name in sal.get("sets", {}):
            maps[m] = np.asarray(sal["sets"][set_name], dtype=float).reshape(sal["shape"])
    if not maps:
        return None
    shares = {m: a / np.maximum(a.sum(axis=1, keepdims=True), 1e-30) for m, a in maps.items()}
    vmax = max(s.max() for s in shares.values())
    blocks = spurious_blocks(r)
    ncol = 2 if len(shares) > 1 else 1
    nrow = (len(shares) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.6 * ncol, 2.9 * nrow + 0.9), squeeze=False,
                             layout="constrained")
    for ax, (m, share) in zip(axes.flat, shares.items()):
        classes, length = share.shape
        im = ax.imshow(share, aspect="auto", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        for k, (a, b) in enumerate(blocks[:classes]):
            if b > a:
                ax.add_patch(Rectangle((a - 0.5, k - 0.5), b - a, 1, fill=False, ec="#ff3030", lw=1.4))
        sr = view["summary"][m][set_name].get("shortcut_reliance")
        ax.set_title(m + (f"  (shortcut reliance {sr['mean']:.3f})" if sr else ""))
        ax.set_xlabel("feature")
        ax.set_ylabel("class")
        ax.set_yticks(range(classes))
        ax.set_xticks(range(0, length, 5))
    for ax in list(axes.flat)[len(shares):]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes, shrink=0.8, label="share of the class's saliency")
    fig.suptitle(f"Saliency |∂logit_y/∂x| on {set_name.replace('_', ' ')}, mean of {n_seeds(r)} seeds, "
                 f"p = {view['p']:g}; each row sums to 1; red: the class's spurious block")
    return svg_of(fig)


def figure_afr_histogram(r, view, methods):
    hists = {m: view["cross_seed"][m]["afr_p_histogram"] for m in methods  # afr-oracle's stage 1 is afr's
             if "afr_p_histogram" in view["cross_seed"].get(m, {}) and m not in BOUNDS}
    if not hists:
        return None
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for i, (m, h) in enumerate(hists.items()):
        counts = np.asarray(h["counts"], dtype=float)
        edges = np.linspace(h["range"][0], h["range"][1], h["bins"] + 1)
        top = counts[-1] / counts.sum() if counts.sum() else float("nan")
        ax.stairs(np.where(counts > 0, counts, np.nan), edges, color=colour(m, i), lw=2,
                  label=f"{m}: {top:.1%} in the top bin, n = {int(counts.sum())}")
        ax.stairs(np.where(counts > 0, counts, np.nan), edges, color=colour(m, i), fill=True, alpha=0.15)
    ax.set_yscale("log")
    ax.set_xlabel("stage-1 softmax probability of the true class")
    ax.set_ylabel("samples (log scale)")
    ax.legend(loc="upper left")
    ax.set_title(f"AFR: stage-1 true-class probability on the stage-2 set ({n_seeds(r)} seeds pooled, "
                 f"p = {view['p']:g})\nWhere it is ≈ 1 for every sample, the weights exp(-γ·prob) are equal "
                 "and stage 2 keeps the ERM head", fontsize=11)
    fig.tight_layout()
    return svg_of(fig)


def figure_cost(r, view, methods):
    timing = view["timing"]
    methods = [m for m in methods if m in timing]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 6), gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(methods))
    for i, m in enumerate(methods):
        bottom = 0.0
        for st in timing[m]["stages"]:
            c = STAGE_COLOURS.get(st["stage"], "0.5")
            if st.get("shared"):
                ax.bar(i, st["s"], bottom=bottom, color="white", edgecolor=c, hatch="//", lw=0.8, width=0.6)
            else:
                ax.bar(i, st["s"], bottom=bottom, color=c, width=0.6)
            bottom += st["s"]
        # Files written before periodic_evaluation became a stage hold those evaluations in wall_s only.
        own = sum(st["s"] for st in timing[m]["stages"] if not st.get("shared"))
        unlisted = timing[m]["wall_s"] - own
        if unlisted > 0.005 * timing[m]["wall_s"]:
            ax.bar(i, unlisted, bottom=bottom, color=UNLISTED_COLOUR, width=0.6)
            bottom += unlisted
        ax.text(i, bottom, f"{timing[m]['wall_s']:.2f} s", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x)
    ax.set_xticklabels(methods, rotation=30, ha="right")
    ax.set_ylabel("wall time (s, all seeds together)")
    ax.set_title("Time per stage; label = the method's wall time (shared stages excluded)")
    handles = [Patch(color=STAGE_COLOURS[s], label=s.replace("_", " ")) for s in STAGES]
    handles.append(Patch(color=UNLISTED_COLOUR, label="in no stage (wall − stages;\nolder files: periodic evaluation)"))
    handles.append(Patch(facecolor="white", edgecolor="0.3", hatch="//",
                         label="shared with another method\n(counted there, not in this wall time)"))
    ax.legend(handles=handles, fontsize=9, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    # s per epoch of every stage that counts epochs (ERM training: one pass over the training set by all
    # seeds; AFR head fit: one full-batch epoch of one grid point, all seeds), the shared ones hatched.
    epoch_stages = [s for s in STAGES if any(st["stage"] == s and st.get("epoch_s")
                                             for m in methods for st in timing[m]["stages"])]
    width = 0.8 / max(1, len(epoch_stages))
    shortest, tallest = np.inf, 0.0
    for j, stage in enumerate(epoch_stages):
        c = STAGE_COLOURS.get(stage, "0.5")
        for i, m in enumerate(methods):
            st = next((s for s in timing[m]["stages"] if s["stage"] == stage and s.get("epoch_s")), None)
            if not st:
                continue
            pos = i + (j - (len(epoch_stages) - 1) / 2) * width
            if st.get("shared"):
                ax2.bar(pos, st["epoch_s"], width, color="white", edgecolor=c, hatch="//", lw=0.8)
            else:
                ax2.bar(pos, st["epoch_s"], width, color=c)
            ax2.text(pos, st["epoch_s"], f" {st['epoch_s']:.2g}", ha="center", va="bottom", fontsize=8, rotation=90)
            shortest, tallest = min(shortest, st["epoch_s"]), max(tallest, st["epoch_s"])
    ax2.set_yscale("log")
    if tallest > 0:
        ax2.set_ylim(shortest / 4, tallest * 8)  # the shortest bar visible, room for the value labels
    ax2.set_xticks(x)
    ax2.set_xticklabels(methods, rotation=30, ha="right")
    ax2.set_ylabel("s per epoch, all seeds (log scale)")
    ax2.set_title("Seconds per epoch of each stage\n(hatched: shared, run once for several methods)")
    ax2.legend(handles=[Patch(color=STAGE_COLOURS.get(s, "0.5"), label=s.replace("_", " ")) for s in epoch_stages],
               fontsize=9, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    env = r["environment"]
    fig.suptitle(f"Cost per method: {n_seeds(r)} seeds, {r['config']['steps']} steps, "
                 f"{env.get('backend')} backend, {env.get('device')}, {env.get('threads')} threads")
    fig.tight_layout()
    return svg_of(fig)


def curve_runs(view, methods):
    """method -> its seeds' curves, for the methods that trained a network (DFR and afr-source have none)."""
    curves = {}
    for m in methods:
        runs = [run["curves"] for run in view["runs"]
                if run["method"] == m and run.get("curves") and run["curves"].get("step")]
        if runs:
            curves[m] = runs
    return curves


def curve_values(runs, set_name, metric):
    """The steps and a (seeds, steps) array, or (seeds, steps, classes) for per_group_accuracy; null is NaN.
    Runs are cut to the shortest one."""
    n = min(len(c["step"]) for c in runs)
    return np.asarray(runs[0]["step"][:n]), np.array([c[set_name][metric][:n] for c in runs], dtype=float)


def mean_and_band(values):
    """Mean over seeds (axis 0) and the BAND_PERCENTILES band, ignoring NaN (absent classes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: a class absent from the set
        return np.nanmean(values, axis=0), np.nanpercentile(values, BAND_PERCENTILES, axis=0)


def figure_curves(r, view, methods):
    curves = curve_runs(view, methods)
    if not curves:
        return None
    sets = [("test_clean", "clean test accuracy"), ("test_conflicting", "conflicting test accuracy")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    for ax, (s, label) in zip(axes, sets):
        for i, (m, runs) in enumerate(curves.items()):
            steps, acc = curve_values(runs, s, "accuracy")
            name = m + (" (stage 1)" if m.startswith("afr") else "")
            ax.plot(steps, np.nanmean(acc, axis=0), color=colour(m, i), lw=2, label=name)
            ax.fill_between(steps, np.nanmin(acc, axis=0), np.nanmax(acc, axis=0), color=colour(m, i), alpha=0.2)
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.set_title(label)
    axes[0].legend(loc="lower right")
    fig.suptitle(f"Training curves: mean of {n_seeds(r)} seeds (line), min–max over seeds (band), "
                 f"p = {view['p']:g}")
    fig.tight_layout()
    return svg_of(fig)


def figure_per_group_curves(r, view, methods):
    """One panel per class (clean test accuracy of that class), then worst-group accuracy on the clean and the
    conflicting test set; per method the mean over seeds and the BAND_PERCENTILES band."""
    curves = {m: runs for m, runs in curve_runs(view, methods).items()
              if all("per_group_accuracy" in c.get("test_clean", {}) for c in runs)}
    if not curves:
        return None
    classes = r["config"]["data"]["classes"]
    panels = [(f"class {k}", "test_clean", k) for k in range(classes)]
    panels += [(f"worst group, {s.split('_')[1]} test", s, None) for s in ("test_clean", "test_conflicting")
               if all("worst_group_accuracy" in c.get(s, {}) for runs in curves.values() for c in runs)]
    ncol = 4
    nrow = (len(panels) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.7 * ncol, 2.6 * nrow + 1.0), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (title, s, k) in zip(axes.flat, panels):
        drawn = False
        for i, (m, runs) in enumerate(curves.items()):
            if k is None:
                steps, values = curve_values(runs, s, "worst_group_accuracy")
            else:
                steps, values = curve_values(runs, s, "per_group_accuracy")
                values = values[:, :, k]
            mean, (lo, hi) = mean_and_band(values)
            if np.all(np.isnan(mean)):
                continue
            ax.plot(steps, mean, color=colour(m, i), lw=1.8, label=m + (" (stage 1)" if m.startswith("afr") else ""))
            ax.fill_between(steps, lo, hi, color=colour(m, i), alpha=0.2, lw=0)
            drawn = True
        if not drawn:
            ax.text(0.5, 0.5, f"absent from {s.replace('_', ' ')}", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=11, fontweight="bold" if k is None else "normal")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for j, ax in enumerate(axes.flat):
        if j >= len(panels):
            ax.set_visible(False)
            axes.flat[j - ncol].xaxis.set_tick_params(labelbottom=True)  # the panel above ends its column
        elif j + ncol >= len(panels):
            ax.set_xlabel("training step")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    axes[0][0].legend(loc="lower right", fontsize=8)
    lo_p, hi_p = BAND_PERCENTILES
    fig.suptitle(f"Accuracy per class on the clean test set during training (AFR: stage 1), and worst-group "
                 f"accuracy;\nmean of {n_seeds(r)} seeds (line), {lo_p}th–{hi_p}th percentile over seeds (band), "
                 f"p = {view['p']:g}")
    fig.tight_layout()
    return svg_of(fig)


def figure_p_sweep(r, methods):
    sweep = sorted(r["sweep"], key=lambda e: e["p"])
    ps = np.array([e["p"] for e in sweep])
    metrics = [("accuracy", "accuracy"), ("worst_group_accuracy", "worst-group accuracy")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    for ax, (metric, label) in zip(axes, metrics):
        for i, m in enumerate(methods):
            stats = [e["summary"].get(m, {}).get("test_clean", {}).get(metric) for e in sweep]
            mean = np.array([s["mean"] if s else np.nan for s in stats])
            lo = np.array([s["ci95"][0] if s and s.get("ci95") else np.nan for s in stats])
            hi = np.array([s["ci95"][1] if s and s.get("ci95") else np.nan for s in stats])
            ax.plot(ps, mean, "o--" if m in BOUNDS else "o-", color=colour(m, i), lw=2, ms=4,
                    label=f"{m} (bound)" if m in BOUNDS else m)
            ax.fill_between(ps, lo, hi, color=colour(m, i), alpha=0.2)
        ax.set_xlabel("p (share of each class with the planted feature)")
        ax.set_ylabel(f"clean test {label}")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.set_title(f"clean test {label}")
    axes[0].legend(loc="lower left")
    fig.suptitle(f"Clean test accuracy vs p: mean of {n_seeds(r)} seeds per point, band = 95 % CI of the mean, "
                 f"{r['config']['steps']} steps")
    fig.tight_layout()
    return svg_of(fig)


def load_npy(folder, name):
    path = Path(folder) / name
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: cannot read: {e}")


def load_dataset(folder, base):
    folder = Path(folder)
    try:
        meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ReportError(f"{folder / 'dataset.json'}: cannot read: {e}")
    if meta.get("schema") != DATASET_SCHEMA:
        raise ReportError(f"{folder / 'dataset.json'}: schema is {meta.get('schema')!r}, expected {DATASET_SCHEMA!r}")
    d = {name: load_npy(folder, name + ".npy") for name in
         ["x_train", "y_train", "planted_train", "x_test_clean", "x_test_aligned", "x_test_conflicting",
          "y_test"]}
    if base is None:
        source = meta.get("data_source", "embedded")
        base = Path(source) if source != "embedded" and Path(source).is_dir() else REPO / "data" / "mnist1d"
    n, length = d["x_train"].shape
    try:
        d["x_base"] = np.fromfile(Path(base) / "x_train.f32", dtype="<f4").reshape(n, length)
    except (OSError, ValueError) as e:
        raise ReportError(f"{Path(base) / 'x_train.f32'}: cannot read D_base as {n}x{length} float32: {e}")
    d["meta"] = meta
    return d


def figure_embedding_pca(d):
    base, sp, y, planted = d["x_base"], d["x_train"], d["y_train"], d["planted_train"]
    mean = base.mean(axis=0)
    _, sv, vt = np.linalg.svd(base - mean, full_matrices=False)
    explained = sv ** 2 / np.sum(sv ** 2)
    proj = lambda x: (x - mean) @ vt[:2].T  # noqa: E731
    pb, ps = proj(base), proj(sp)
    tests = [(proj(d["x_test_aligned"]), "aligned", "#1f77b4"), (proj(d["x_test_conflicting"]), "conflicting", "#d62728"),
             (proj(d["x_test_clean"]), "clean", "0.2")]
    allp = np.vstack([pb, ps] + [t[0] for t in tests])
    lim = np.percentile(allp, [0.2, 99.8], axis=0)
    pad = 0.05 * (lim[1] - lim[0])
    fig, axes = plt.subplots(2, 2, figsize=(12, 10.5), sharex=True, sharey=True, dpi=100)
    cmap = plt.cm.tab10
    for ax, p, title in [(axes[0][0], pb, "D_base (clean training set), by class"),
                         (axes[0][1], ps, "D_sp (planted training set), by class")]:
        ax.scatter(p[:, 0], p[:, 1], c=cmap(y % 10), s=4, alpha=0.6, lw=0, rasterized=True)
        ax.set_title(title)
    axes[0][1].legend(handles=[Patch(color=cmap(k), label=str(k)) for k in range(int(y.max()) + 1)],
                      title="class", fontsize=8, loc="upper right", ncol=2)
    ax = axes[1][0]
    for mask, label, c in [(planted >= 0, f"planted ({np.sum(planted >= 0)})", "#d62728"),
                           (planted < 0, f"not planted ({np.sum(planted < 0)})", "0.2")]:
        ax.scatter(ps[mask, 0], ps[mask, 1], s=4, alpha=0.6, lw=0, color=c, label=label, rasterized=True)
    ax.set_title("D_sp, planted or not")
    ax.legend(markerscale=3, loc="upper right")
    ax = axes[1][1]
    for p, label, c in tests:
        ax.scatter(p[:, 0], p[:, 1], s=5, alpha=0.6, lw=0, color=c, rasterized=True,
                   label={"clean": "clean (not planted)", "aligned": "aligned (own class planted)",
                          "conflicting": "conflicting (other class planted)"}[label])
    ax.set_title("test sets, planted or not")
    ax.legend(markerscale=3, loc="upper right")
    for ax in axes.flat:
        ax.set_xlim(lim[0][0] - pad[0], lim[1][0] + pad[0])
        ax.set_ylim(lim[0][1] - pad[1], lim[1][1] + pad[1])
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel(f"PC 1 ({explained[0]:.1%} of D_base variance)")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"PC 2 ({explained[1]:.1%})")
    m = d["meta"]
    fig.suptitle(f"PCA fitted on D_base; seed {m.get('seed')}, seed index {m.get('seed_index')}, p = {m.get('p'):g}, "
                 f"noise {m.get('noise_draw')} N({m.get('noise_mean'):g}, {m.get('noise_sd'):g}) ≥ 0")
    fig.tight_layout()
    return svg_of(fig)


# ---------------------------------------------------------------- HTML

def fmt(v, digits=3):
    if v is None:
        return "–"
    if isinstance(v, float) and not np.isfinite(v):
        return "–"
    return f"{v:.{digits}f}"


def stat_cell(st):
    if not st:
        return "–"
    ci = st.get("ci95")
    cis = f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else ""
    return f"{fmt(st['mean'])} ± {fmt(st.get('std'))}{cis}"


def table(headers, rows):
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in headers) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def config_table(r, view):
    c, env, sp = r["config"], r["environment"], r["config"]["spurious"]
    p = ", ".join(f"{v:g}" for v in sp["p_sweep"]) if "p_sweep" in sp else f"{sp['p']:g}"
    afr, dfr = c.get("afr", {}), c.get("dfr", {})
    rows = [
        ("seeds", c["seeds"]), ("steps", c["steps"]), ("batch", c.get("batch")), ("lr", c.get("lr")),
        ("channels C (parameters per seed)", f"{c.get('channels')} ({c.get('parameters_per_seed')})"),
        ("p", p + (f" (tables and per-method figures: p = {view['p']:g})" if "sweep" in r else "")),
        ("spurious noise", f"{sp.get('noise_draw')} draw, truncated N({sp.get('noise_mean')}, {sp.get('noise_sd')}) ≥ 0, "
                           f"blocks stride {sp.get('block_stride')} width {sp.get('block_width')}"),
        ("methods", ", ".join(c.get("methods", []))),
        ("DFR", f"fraction {dfr.get('fraction')}, {dfr.get('subsamples')} subsamples, L1 grid {dfr.get('l1_grid')}"),
        ("AFR", f"stage 1 on {afr.get('stage1_fraction')} for {afr.get('stage1_steps')} steps, "
                f"γ {afr.get('gammas')}, λ {afr.get('lambdas')}, {afr.get('epochs')} epochs"),
        ("base seed, batch order, eval every", f"{c.get('seed')}, {c.get('batch_order')}, {c.get('eval_every')}"),
        ("backend, device, threads", f"{env.get('backend')}, {env.get('device')}, {env.get('threads')}"),
        ("version, git commit, compiler", f"{env.get('version')}, {env.get('git_commit')}, {env.get('compiler')}"),
        ("results written", r.get("created")),
    ]
    return table(["setting", "value"], rows)


def summary_table(view, methods):
    rows = []
    for m in methods:
        for s in ["train"] + TEST_SETS:
            st = view["summary"][m].get(s)
            if not st:
                continue
            sr = st.get("shortcut_reliance")
            rows.append((m, s, stat_cell(st.get("accuracy")), stat_cell(st.get("worst_group_accuracy")),
                         fmt(sr["mean"]) if sr else "–", st["accuracy"].get("n", "–")))
    return table(["method", "set", "accuracy mean ± std [95 % CI]", "worst-group accuracy mean ± std [95 % CI]",
                  "shortcut reliance (mean)", "seeds"], rows)


def cross_seed_table(view, methods):
    rows = []
    for m in methods:
        cs = view["cross_seed"].get(m, {})
        u, d, b = cs.get("underspecification", {}), cs.get("disagreement", {}), cs.get("beats_erm_worst_group", {})
        sr = lambda s: view["summary"][m].get(s, {}).get("shortcut_reliance")  # noqa: E731
        rows.append((m, fmt(u.get("test_aligned"), 2), fmt(u.get("test_conflicting"), 2),
                     fmt(d.get("test_clean")), fmt(d.get("test_aligned")), fmt(d.get("test_conflicting")),
                     fmt(b.get("test_clean"), 2), fmt(b.get("test_conflicting"), 2),
                     stat_cell(cs.get("worst_group_gain_vs_erm", {}).get("test_clean")),
                     fmt(sr("train")["mean"]) if sr("train") else "–",
                     fmt(sr("test_clean")["mean"]) if sr("test_clean") else "–"))
    return table(["method", "underspec. aligned", "underspec. conflicting", "disagreement clean",
                  "disagreement aligned", "disagreement conflicting", "beats erm (wg, clean)",
                  "beats erm (wg, conflicting)", "wg gain over erm, paired (clean)", "shortcut reliance train", "shortcut reliance clean"], rows)


def choices_table(view, methods):
    """What DFR and AFR chose per seed, condensed."""
    def counts(values):
        vals, n = np.unique(np.round(np.asarray(values, dtype=float), 6), return_counts=True)
        return ", ".join(f"{v:g}×{k}" for v, k in zip(vals, n))
    rows = []
    for m in methods:
        runs = [run for run in view["runs"] if run["method"] == m]
        if runs and all("afr" in run for run in runs):
            a = [run["afr"] for run in runs]
            ep, ess = [x["epoch"] for x in a], [x["ess"] for x in a]
            rows.append((m, f"γ {counts([x['gamma'] for x in a])}; λ {counts([x['lambda'] for x in a])}; "
                            f"epoch median {np.median(ep):g} [{min(ep)}, {max(ep)}]; "
                            f"ESS median {np.median(ess):.0f} [{min(ess):.0f}, {max(ess):.0f}]"))
        elif runs and all("dfr" in run for run in runs):
            rows.append((m, f"L1 {counts([run['dfr']['l1'] for run in runs])}"))
    if not rows:
        return ""
    return ("<p>What DFR and AFR chose per seed (by validation worst-group accuracy); ESS is AFR's effective "
            "sample size 1/Σμ² on the stage-2 set.</p>" + table(["method", "chosen (value×seeds)"], rows))


def timing_table(view, methods):
    rows = []
    for m in methods:
        t = view["timing"].get(m)
        if not t:
            continue
        stages = {s["stage"]: s for s in t["stages"]}
        cells = []
        for name in STAGES:
            s = stages.get(name)
            if not s:
                cells.append("–")
                continue
            cells.append(f"{s['s']:.2f}" + (" shared" if s.get("shared") else ""))
        rows.append((m, f"{t['wall_s']:.2f}", f"{t.get('train_s', 0):.2f}",
                     f"{t['seed_steps_per_s']:.0f}" if t.get("seed_steps_per_s") else "–",
                     f"{t['epoch_s']:.3g}" if t.get("epoch_s") else "–", *cells))
    return table(["method", "wall s", "train s", "seed-steps/s", "s/epoch"] + [f"{s} s" for s in STAGES], rows)


def epoch_table(r, view, methods):
    """Cost per epoch of every stage that counts epochs, per method (timing.<method>.stages[])."""
    rows = []
    for m in methods:
        t = view["timing"].get(m)
        for st in (t or {}).get("stages", []):
            if not st.get("epochs"):
                continue
            epoch_s = st.get("epoch_s") or st["s"] / st["epochs"]
            rows.append((m, st["stage"], f"{st['epochs']:g}", f"{st['s']:.3g}", f"{epoch_s:.3g}",
                         f"{1e3 * epoch_s / n_seeds(r):.3g}", "shared" if st.get("shared") else "own"))
    if not rows:
        return ""
    return ("<p>Cost per epoch. ERM training: an epoch is one pass of every seed over its training set; AFR head "
            "fit: one full-batch epoch of one grid point for all seeds (epochs = grid points × stage-2 epochs). "
            "Shared: the stage ran once, for this and other methods, and is counted in the method that ran it. "
            "The timing table's s/epoch is the method's own ERM training per epoch.</p>"
            + table(["method", "stage", "epochs", "stage s", "s per epoch (all seeds)", "ms per seed-epoch",
                     "shared"], rows))


def sweep_table(r, methods):
    rows = []
    for e in sorted(r["sweep"], key=lambda e: e["p"]):
        row = [f"{e['p']:g}"]
        for m in methods:
            st = e["summary"].get(m, {}).get("test_clean", {})
            row.append(f"{fmt(st['accuracy']['mean'])} / {fmt(st['worst_group_accuracy']['mean'])}" if st else "–")
        rows.append(row)
    return table(["p"] + [f"{m} acc / wg" for m in methods], rows)


def inline_svg(svg, prefix):
    """The <svg> element alone, with ids prefixed so several figures can share one page."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    ids = set(re.findall(r'id="([^"]+)"', svg))
    for i in sorted(ids, key=len, reverse=True):
        svg = (svg.replace(f'id="{i}"', f'id="{prefix}-{i}"').replace(f"url(#{i})", f"url(#{prefix}-{i})")
               .replace(f'href="#{i}"', f'href="#{prefix}-{i}"'))
    return svg


CSS = """body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f0f0f0}
figure{margin:1.5em 0}figcaption{font-size:0.95em;color:#444;margin-top:0.3em}svg{max-width:100%;height:auto}"""


def build_html(r, view, methods, figures, captions, source):
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>spurious-bench report</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>spurious-bench report</h1><p>From <code>{html.escape(source)}</code> "
             f"({html.escape(r['schema'])}).</p>",
             "<h2>Configuration</h2>", config_table(r, view)]
    if "sweep" in r:
        parts += ["<h2>p sweep (clean test set, mean over seeds)</h2>", sweep_table(r, methods)]
    title_p = f" (p = {view['p']:g})" if "sweep" in r else ""
    parts += [f"<h2>Summary over seeds{title_p}</h2>",
              "<p>Student-t 95 % interval of the mean. Worst-group accuracy is the minimum over the classes.</p>",
              summary_table(view, methods),
              f"<h2>Across seeds{title_p}</h2>",
              "<p>Underspecification: std of accuracy on the shifted set over std on the clean set. "
              "Disagreement: mean share of test samples two seeds predict differently. Beats erm: share of seed "
              "indices whose worst-group accuracy beats erm's (ties ½). Shortcut reliance: share of saliency on "
              "the block the shortcut points to.</p>",
              cross_seed_table(view, methods), choices_table(view, methods),
              f"<h2>Timing{title_p}</h2>",
              "<p>Seconds for all seeds together. Shared stages are counted in the method that ran them, "
              "not in this one's wall time.</p>",
              timing_table(view, methods), epoch_table(r, view, methods), "<h2>Figures</h2>"]
    for i, (name, svg) in enumerate(figures.items()):
        parts.append(f"<figure id='{name[:-4]}'>{inline_svg(svg, f'f{i}')}"
                     f"<figcaption><b>{html.escape(name)}</b>: {html.escape(captions[name])}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


# ---------------------------------------------------------------- main

def make_report(args):
    r = load_results(args.results)
    view = pick_view(r, args.sweep_p)
    methods = method_order(r, view)
    if not methods:
        raise ReportError(f"{args.results}: no methods in the summary")
    figures, captions = {}, {}

    def add(name, svg, caption):
        if svg is not None:
            figures[name], captions[name] = svg, caption

    add("accuracy_by_method.svg", figure_accuracy_by_method(r, view, methods),
        "final accuracy and worst-group accuracy of every seed (dots, box = quartiles), "
        "with the mean and its 95 % CI (black), per method and test set.")
    if "sweep" in r:
        add("p_sweep.svg", figure_p_sweep(r, methods),
            "clean test accuracy and worst-group accuracy against p, mean and 95 % CI over seeds; dashed: the "
            "upper bounds of a head-only fix (probe-erm, probe-base, afr-oracle), not methods.")
    add("curves.svg", figure_curves(r, view, methods),
        "test accuracy during ERM training (AFR: stage 1), mean and min–max over seeds; DFR and afr-source "
        "train no network and have no curves.")
    lo_p, hi_p = BAND_PERCENTILES
    add("per_group_curves.svg", figure_per_group_curves(r, view, methods),
        "accuracy of each class on the clean test set during ERM training (AFR: stage 1), then worst-group "
        f"accuracy on the clean and the conflicting test set; line: mean over seeds, band: {lo_p}th–{hi_p}th "
        "percentile over seeds (linear interpolation between seeds, so with few seeds it nears min–max). "
        "Methods without curves (DFR, afr-source) are left out.")
    for s in SALIENCY_SETS:
        add(f"saliency_{s}.svg", figure_saliency(r, view, methods, s),
            f"where each class's saliency sits on {s.replace('_', ' ')} (share per feature, mean over seeds); "
            "red boxes are the planted blocks.")
    add("afr_p_histogram.svg", figure_afr_histogram(r, view, methods),
        "stage-1 probability of the true class on AFR's stage-2 set. afr-source reweights the samples stage 1 "
        "trained on, whose probabilities are saturated near 1, so its weights are uniform per class.")
    add("cost_per_method.svg", figure_cost(r, view, methods),
        "wall time per stage (hatched: shared with another method, not counted here) and seconds per epoch of "
        "every stage that counts epochs, shared ones hatched (numbers: the cost-per-epoch table under Timing).")
    if args.dataset:
        add("embedding_pca.svg", figure_embedding_pca(load_dataset(args.dataset, args.base)),
            "inputs projected on the first two principal components of D_base: the planted blocks move "
            "samples along class-specific directions.")
    outputs = dict(figures)
    outputs["report.html"] = build_html(r, view, methods, figures, captions, str(args.results))
    return outputs


def write_outputs(outdir, outputs):
    """Each file goes to a temporary name first and is renamed into place only once all are written."""
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"{outdir}: cannot create: {e}")
    tmp = {}
    try:
        for name, text in outputs.items():
            path = outdir / f".{name}.tmp{os.getpid()}"
            path.write_text(text, encoding="utf-8")
            tmp[name] = path
        for name, path in tmp.items():
            os.replace(path, outdir / name)
    except OSError as e:
        for path in tmp.values():
            path.unlink(missing_ok=True)
        raise ReportError(f"{outdir}: cannot write: {e}")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Figures and an HTML report from a bench_spurious results file.")
    ap.add_argument("results", help="results JSON written by bench_spurious --out")
    ap.add_argument("--out", required=True, help="output folder (created if missing)")
    ap.add_argument("--dataset", help="folder written by 'bench_spurious dataset' (adds embedding_pca.svg)")
    ap.add_argument("--base", help="folder with the clean x_train.f32 (default: the dataset's data source, "
                                   "else data/mnist1d)")
    ap.add_argument("--sweep-p", type=float, help="sweep files: the p the tables and per-method figures show "
                                                  "(default 0.9 if swept, else the largest)")
    args = ap.parse_args(argv)
    try:
        outputs = make_report(args)
        write_outputs(args.out, outputs)
    except ReportError as e:
        print(f"report.py: error: {e}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        print(f"report.py: error: {args.results}: unexpected content ({type(e).__name__}: {e})", file=sys.stderr)
        return 1
    print(f"wrote {len(outputs)} files to {args.out}: {', '.join(outputs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
