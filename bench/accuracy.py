"""Face-box accuracy of prep outputs. Against synth's ground truth: the share of sampled frames
with a true face whose stored box has IoU >= 0.5 with it (dfer shards and the Python
baseline's file, read the same way with h5py: face_box, frame_index, clip_id). Against dfer's
own every-frame detection (`--reference`, shards of a `det_every = 1` run): clips that run
kept and the default run dropped, and the share of frames boxed by the reference whose default
box lies within IoU 0.5 of it (a missing box counts as a miss), plus boxes the default run put
where the reference has none."""
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


FALLBACK = 3  # face_source of a centre crop taken because no face was found


def load(files):
    """clip_id -> (boxes, frame numbers) of the clips that have faces: a dfer clip whose every
    frame is the centre fallback (no face found) counts as dropped, as the Python baseline's
    missing clips do."""
    clips = {}
    for path in files:
        with h5py.File(path, "r") as f:
            ids = [s.decode() if isinstance(s, bytes) else s for s in f["clip_id"][:]]
            boxes, index = f["face_box"][:], f["frame_index"][:]
            # Each clip's frames are a run of rows (dfer's layout, which the Python baseline
            # writes too; it writes only clips where it found a face, and no face_source).
            runs = list(zip(f["frame_start"][:], f["frame_count"][:]))
            per_clip = [(boxes[s:s + n], index[s:s + n]) for s, n in runs]
            source = f["face_source"][:] if "face_source" in f else None
            found = [source is None or not np.all(source[s:s + n] == FALLBACK) for s, n in runs]
            clips.update((i, c) for i, c, k in zip(ids, per_clip, found) if k)
    return clips


def boxed(b):
    return bool(np.all(np.isfinite(b)))


def score(clips, truth):
    frames = good = 0
    for clip_id, (bx, ix) in clips.items():
        t = truth[clip_id]
        for b, k in zip(bx, ix):
            tb = t["boxes"][k]
            if tb is None:
                continue
            frames += 1
            good += boxed(b) and iou(b, tb) >= 0.5
    return {"clips": len(clips), "frames_with_face": frames, "iou_ge_0.5": good / max(frames, 1)}


def agreement(clips, reference):
    frames = good = extra = 0
    for clip_id, (rb, _) in reference.items():
        if clip_id not in clips:
            continue
        for b, r in zip(clips[clip_id][0], rb):
            if boxed(r):
                frames += 1
                good += boxed(b) and iou(b, r) >= 0.5
            elif boxed(b):
                extra += 1
    dropped = sorted(set(reference) - set(clips))
    return {
        "reference_clips": len(reference),
        "dropped": len(dropped),
        "dropped_ids": dropped,
        "reference_frames_with_box": frames,
        "within_iou_0.5": good / max(frames, 1),
        "boxes_where_reference_has_none": extra,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--truth", required=True)
    ap.add_argument("--dfer", required=True, help="dfer shards folder (default settings)")
    ap.add_argument("--reference", required=True, help="dfer shards folder of a det_every = 1 run")
    ap.add_argument("--python", required=True, help="Python baseline h5")
    a = ap.parse_args()
    truth = {}
    for line in open(os.path.join(a.truth, "synth_truth.jsonl")):
        t = json.loads(line)
        truth[t["clip_id"]] = t
    shards = lambda d: load(sorted(glob.glob(os.path.join(d, "*.h5"))))
    dfer, reference, python = shards(a.dfer), shards(a.reference), load([a.python])
    out = {
        "dfer": score(dfer, truth),
        "reference": score(reference, truth),
        "python": score(python, truth),
        "dfer_vs_reference": agreement(dfer, reference),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
