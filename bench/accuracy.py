"""Face-box accuracy of prep outputs against synth's ground truth: the share of sampled frames
with a true face whose stored box has IoU >= 0.5 with it. Reads dfer shards and the Python
baseline's file the same way (h5py: face_box, frame_index, clip_id)."""
import argparse
import glob
import json
import os

import h5py
import numpy as np


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def score(files, truth):
    frames = good = clips = 0
    for path in files:
        with h5py.File(path, "r") as f:
            ids = [s.decode() if isinstance(s, bytes) else s for s in f["clip_id"][:]]
            boxes, index = f["face_box"][:], f["frame_index"][:]
        for clip_id, bx, ix in zip(ids, boxes, index):
            clips += 1
            t = truth[clip_id]
            for b, k in zip(bx, ix):
                tb = t["boxes"][k]
                if tb is None:
                    continue
                frames += 1
                good += bool(np.all(np.isfinite(b))) and iou(b, tb) >= 0.5
    return {"clips": clips, "frames_with_face": frames, "iou_ge_0.5": good / max(frames, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--truth", required=True)
    ap.add_argument("--dfer", required=True, help="dfer shards folder")
    ap.add_argument("--python", required=True, help="Python baseline h5")
    a = ap.parse_args()
    truth = {}
    for line in open(os.path.join(a.truth, "synth_truth.jsonl")):
        t = json.loads(line)
        truth[t["clip_id"]] = t
    out = {"dfer": score(sorted(glob.glob(os.path.join(a.dfer, "*.h5"))), truth), "python": score([a.python], truth)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
