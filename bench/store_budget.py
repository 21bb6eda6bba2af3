#!/usr/bin/env python3
"""What `store_frames` costs and buys on the real datasets' clip lengths.

A clip of up to `store_frames` frames is stored whole (the published test and training frames
exactly); a longer one keeps its 16 test frames and (store_frames - 16) / 16 frames of each
training segment. Given annotation lists in the `<frame_dir> <num_frames> <label>` format the
PyTorch DFER repositories ship (e.g. DFER-CLIP's `annotation/DFEW_set_1_test.txt`, whose frame
counts are the official face-crop folders'), this prints, per budget: the share of clips stored
whole, the mean frames kept per clip, and the shard size per 1,000 clips at the bytes per kept
frame measured on real dfer shards (`--shards`: a prep's shards folder; face and scene streams
together).

Usage: store_budget.py --shards PREP/shards LIST.txt [LIST.txt ...]   (h5py; no torch)
"""
import argparse
import glob
import os

import h5py


def kept(n, t, budget):
    """Frames a clip of n frames keeps: sampling::stored_frames in dfer, counted the same way."""
    if n <= budget:
        return n
    tick = n / t
    frames = {int(tick / 2.0 + tick * i) for i in range(t)}
    k = max(1, (budget - t) // t)
    avg = n // t
    for i in range(t):
        m = min(k, avg)
        frames |= {i * avg + int((j + 0.5) * avg / m) for j in range(m)}
    return len(frames)


def bytes_per_frame(shards):
    total = frames = 0
    for path in glob.glob(os.path.join(shards, "*.h5")):
        total += os.path.getsize(path)
        with h5py.File(path, "r") as f:
            frames += int(f["frame_count"][:].sum())
    return total / frames


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", required=True)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--budgets", default="32,64,96,128")
    ap.add_argument("lists", nargs="+")
    a = ap.parse_args()
    per_frame = bytes_per_frame(a.shards)
    print(f"bytes per kept frame (face + scene), measured on {a.shards}: {per_frame:,.0f}")
    print("| list | clips | store_frames | stored whole | mean frames kept | GB per 1,000 clips |")
    print("|---|---|---|---|---|---|")
    for path in a.lists:
        counts = [int(line.split()[1]) for line in open(path) if line.strip()]
        for budget in (int(b) for b in a.budgets.split(",")):
            sizes = [kept(n, a.frames, budget) for n in counts]
            whole = sum(n <= budget for n in counts) / len(counts)
            mean = sum(sizes) / len(sizes)
            gb = mean * per_frame * 1000 / 1e9
            print(f"| {os.path.basename(path)} | {len(counts)} | {budget} | {100 * whole:.1f} % | {mean:.1f} | {gb:.2f} |")


if __name__ == "__main__":
    main()
