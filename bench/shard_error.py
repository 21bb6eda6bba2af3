#!/usr/bin/env python3
"""Mean absolute pixel error of one prep's shards against another's (raw), frame by frame.

Usage: shard_error.py RAW_SHARDS_DIR OTHER_SHARDS_DIR   (h5py, numpy, Pillow; no torch)
Clips are matched by clip_id; prints one number (grey levels, 0-255).
"""
import io
import pathlib
import sys

import h5py
import numpy as np
from PIL import Image


def frames(f, stream, i):  # clip i's stored frames (schema 2: a run of rows)
    start = int(f["frame_start"][i])
    data = f[stream][start:start + int(f["frame_count"][i])]
    if f.attrs["encoding"] == "jpeg":
        return np.stack([np.asarray(Image.open(io.BytesIO(b.tobytes())).convert("RGB")) for b in data])
    return data


def clips(folder):
    for path in sorted(pathlib.Path(folder).glob("*.h5")):
        with h5py.File(path, "r") as f:
            for i, cid in enumerate(f["clip_id"].asstr()[:]):
                yield cid, frames(f, "face", i), frames(f, "scene", i)


raw = {cid: (face, scene) for cid, face, scene in clips(sys.argv[1])}
total, count = 0.0, 0
for cid, face, scene in clips(sys.argv[2]):
    for a, b in zip(raw[cid], (face, scene)):
        total += np.abs(a.astype(np.int16) - b.astype(np.int16)).sum()
        count += a.size
print(f"{total / count:.3f}")
