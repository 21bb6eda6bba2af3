#!/usr/bin/env python3
"""Does the intensity-aware loss (`loss.ial`) help on weak-intensity clips, and leave clean data alone?

Two synthetic DFEW-layout sets from the same seed, identical but for intensity: `clean` (every
clip's class ring at full colour) and `weak` (`--weak-share` of each class's clips drawn with the
ring faded toward grey to `--weak-intensity`; `dfer synth --weak-share/--weak-intensity`, each
clip's intensity in synth_truth.jsonl). Both are prepared once (T = 4, 48 px, as the training
tests), then the tiny model trains on every fold (1-5, so every clip is tested once) and seed
with `loss.ial = 0` and `= LAMBDA`. Held-out predictions are joined with the truth file and
scored overall (WAR, UAR) and on the weak and the full-intensity clips apart. Runs with and
without IAL are paired (same set, fold and seed), and the table gives the mean paired
difference with its standard error.

    python3 bench/ial_bench.py --dfer target/release/dfer [--seeds 2] [--lam 0.1] [--out bench-out/ial]

Plain Python 3 (no packages); a benchmark, not a test: the outcome is a measurement.
"""
import argparse
import csv
import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

PREP = "frames = 4\nstore_frames = 4\nface_size = 48\nscene_size = 48\nclips_per_shard = 64\n"


def run(cmd):
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"ial_bench: {' '.join(map(str, cmd))} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def make_set(a, name, share):
    """Synth, manifest and prep of one set; skipped when its shards exist."""
    root = a.out / name
    shards = root / "prep" / "shards"
    if (root / "prep" / "prep.parquet").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    data = root / "dfew"
    run([a.dfer, "-q", "synth", "--layout", "dfew", "--clips", a.clips, "--out", data, "--seed", 5,
         "--max-height", 240, "--max-frames", 20, "--lfw-faces", 6, "--no-face-frames",
         "--weak-share", share, "--weak-intensity", a.intensity])
    run([a.dfer, "-q", "manifest", "--dataset", "dfew", "--root", data, "-o", root / "clips.parquet",
         "--source", "video"])
    (root / "prep.toml").write_text(PREP)
    run([a.dfer, "-q", "prep", "--manifest", root / "clips.parquet", "--out", root / "prep",
         "--config", root / "prep.toml"])
    assert shards.is_dir()
    return root


def train_config(root, fold, seed, lam, epochs):
    return (
        f'[data]\nmanifest = "{root / "clips.parquet"}"\nshards = "{root / "prep" / "shards"}"\nfold = {fold}\n'
        f'[model]\narch = "tiny"\nheads = 4\nn_ctx = 4\nsim_dim = 16\nseed = {seed}\n'
        f"[loss]\nial = {lam}\n"
        f"[train]\nbatch_size = 8\nloader_threads = 2\nwarmup_epochs = 0.5\nepochs = {epochs}\n"
        f"finetune_image = true\nlr_image = 0.001\nlr = 0.003\nseed = {seed}\n"
        "[aug]\ncrop_area = [0.6, 1.0]\njitter = 0.1\n"
    )


def score(rows):
    """WAR and UAR (%) of (label, predicted) pairs."""
    if not rows:
        return float("nan"), float("nan")
    war = 100 * sum(l == p for l, p in rows) / len(rows)
    per = {}
    for l, p in rows:
        per.setdefault(l, []).append(l == p)
    uar = 100 * statistics.mean(sum(v) / len(v) for v in per.values())
    return war, uar


def one_run(a, root, truth, fold, seed, lam):
    """Trains and evaluates one (set, fold, seed, λ); returns its held-out scores."""
    tag = f"fold{fold}-seed{seed}-ial{lam}"
    run_dir = root / "runs" / tag
    result = run_dir / "bench_scores.json"
    if result.exists():
        return json.loads(result.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    cfg = root / "runs" / f"{tag}.toml"
    cfg.write_text(train_config(root, fold, seed, lam, a.epochs))
    run([a.dfer, "-q", "train", "--config", cfg, "--run", run_dir])
    run([a.dfer, "-q", "eval", "--run", run_dir, "--json"])
    preds = list(csv.DictReader(open(run_dir / "predictions.csv")))
    rows = {"all": [], "weak": [], "full": []}
    for p in preds:
        t = truth[p["clip_id"]]
        pair = (p["label"], p["predicted"])
        rows["all"].append(pair)
        rows["weak" if t["intensity"] < 1.0 else "full"].append(pair)
    scores = {k: dict(zip(("war", "uar"), score(v)), clips=len(v)) for k, v in rows.items()}
    result.write_text(json.dumps(scores))
    return scores


def mean_se(xs):
    xs = [x for x in xs if not math.isnan(x)]
    if len(xs) < 2:
        return (xs[0] if xs else float("nan")), float("nan")
    return statistics.mean(xs), statistics.stdev(xs) / math.sqrt(len(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dfer", type=Path, default=Path("target/release/dfer"))
    ap.add_argument("--out", type=Path, default=Path("bench-out/ial"))
    ap.add_argument("--clips", type=int, default=140)
    ap.add_argument("--weak-share", type=float, default=0.5)
    ap.add_argument("--intensity", type=float, default=0.35)
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=12)
    a = ap.parse_args()
    a.dfer = a.dfer.resolve()
    a.out.mkdir(parents=True, exist_ok=True)
    a.out = a.out.resolve()
    table = {}
    for name, share in (("clean", 0.0), ("weak", a.weak_share)):
        root = make_set(a, name, share)
        clips = (json.loads(line) for line in open(root / "dfew" / "synth_truth.jsonl"))
        truth = {c["clip_id"]: c for c in clips}
        for fold in range(1, a.folds + 1):
            for seed in range(a.seeds):
                for lam in (0.0, a.lam):
                    s = one_run(a, root, truth, fold, seed, lam)
                    table.setdefault((name, lam), []).append(s)
                    print(f"{name:5} fold {fold} seed {seed} ial {lam:<4}: WAR {s['all']['war']:5.1f}  "
                          f"weak {s['weak']['war']:5.1f} ({s['weak']['clips']})  "
                          f"full {s['full']['war']:5.1f} ({s['full']['clips']})", flush=True)
    print(f"\n{a.folds} folds x {a.seeds} seeds per row, tiny OUS, {a.epochs} epochs, {a.clips} clips; "
          f"weak set: {a.weak_share:.0%} of each class at intensity {a.intensity}")
    print("| set | loss.ial | WAR | UAR | WAR weak clips | WAR full clips |")
    print("|---|---|---|---|---|---|")
    for (name, lam), runs in table.items():
        cells = []
        for part, metric in (("all", "war"), ("all", "uar"), ("weak", "war"), ("full", "war")):
            m, se = mean_se([r[part][metric] for r in runs])
            cells.append("-" if math.isnan(m) else f"{m:.1f} ± {se:.1f}")
        print(f"| {name} | {lam} | " + " | ".join(cells) + " |")
    print("\nPaired difference, IAL minus none (same set, fold, seed), mean ± standard error:")
    summary = {}
    for name in ("clean", "weak"):
        off, on = table[(name, 0.0)], table[(name, a.lam)]
        for part in ("all", "weak", "full"):
            diffs = [b[part]["war"] - o[part]["war"] for o, b in zip(off, on)]
            m, se = mean_se(diffs)
            if math.isnan(m):
                continue
            summary[f"{name}/{part}"] = {"mean": m, "se": se, "n": len(diffs)}
            print(f"  {name:5} {part:4} WAR: {m:+.1f} ± {se:.1f} points over {len(diffs)} pairs")
    (a.out / "summary.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()},
                                                     "paired_war_difference": summary}, indent=1))


if __name__ == "__main__":
    main()
