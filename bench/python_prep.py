"""The Python baseline of the prep benchmark: the pipeline a careful researcher writes.

It keeps the frames dfer keeps (every frame of a clip up to --store-frames long, else the 16
test frames and an even pool per training segment: dfer's sampling::stored_frames): OpenCV
decodes every frame up to the last kept one but converts only the kept ones (grab/retrieve),
CenterFace runs through onnxruntime at 640 px on each kept frame (one
thread per process; the model patched to dynamic input sizes with its initializers removed
from the inputs, like dfer's), the best face per frame (score x sqrt(area)) is cropped square
with margin 1.25 and resized to 224, the frame is letterboxed to 224 with the face box x1.3
filled with the CLIP mean colour, and h5py writes the tensors in dfer's flat layout (per-frame
datasets, frame_start / frame_count per clip); multiprocessing over clips.
"""
import argparse
import json
import os
import time
from multiprocessing import Pool

import cv2
import h5py
import numpy as np
import onnx
import onnxruntime as ort

T, S, S2, MARGIN, MASK, LONG, THRESH = 16, 224, 224, 1.25, 1.3, 640, 0.4
CLIP_MEAN = np.array([123, 117, 104], np.uint8)
_session = None


def kept(n, budget):
    """The frames a clip of n frames keeps (sorted), as dfer's sampling::stored_frames."""
    if n <= budget:
        return list(range(n))
    tick = n / T
    out = {int(tick / 2.0 + tick * i) for i in range(T)}
    k, avg = max(1, (budget - T) // T), n // T
    for i in range(T):
        m = min(k, avg)
        out |= {i * avg + int((j + 0.5) * avg / m) for j in range(m)}
    return sorted(out)


def patched_model(path):
    m = onnx.load(path)
    inits = {i.name for i in m.graph.initializer}
    keep = [i for i in m.graph.input if i.name not in inits]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    for vi in list(m.graph.input) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        for k in (0, 2, 3):
            dims[k].dim_param = f"{vi.name}_{k}"
    del m.graph.value_info[:]
    return m.SerializeToString()


def init(model_bytes):
    global _session
    cv2.setNumThreads(1)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    _session = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def input_tensor(rgb, long_side):
    """`rgb` resized so that its long side is about `long_side`, each side a multiple of 32, as
    the NCHW float32 CenterFace takes (raw 0-255)."""
    h, w = rgb.shape[:2]
    s = long_side / max(w, h)
    iw, ih = max(32, round(w * s / 32) * 32), max(32, round(h * s / 32) * 32)
    return cv2.resize(rgb, (iw, ih), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)[None].astype(np.float32)


def best_face(session, rgb, long_side, threshold):
    """The face with the largest score x sqrt(area) above `threshold`, as (x1, y1, x2, y2, score)
    in frame pixels; None when there is none."""
    h, w = rgb.shape[:2]
    x = input_tensor(rgb, long_side)
    ih, iw = x.shape[2:]
    heat, scale, off, _ = session.run(["537", "538", "539", "540"], {"input.1": x})
    ys, xs = np.where(heat[0, 0] > threshold)
    best, best_w = None, -1.0
    for i, j in zip(ys, xs):
        bh, bw = np.exp(scale[0, 0, i, j]) * 4, np.exp(scale[0, 1, i, j]) * 4
        x1 = (j + off[0, 1, i, j] + 0.5) * 4 - bw / 2
        y1 = (i + off[0, 0, i, j] + 0.5) * 4 - bh / 2
        score = heat[0, 0, i, j]
        weight = score * np.sqrt(bw * bh)
        if weight > best_w:
            best_w, best = weight, (x1 * w / iw, y1 * h / ih, (x1 + bw) * w / iw, (y1 + bh) * h / ih, float(score))
    return best


def detect(rgb):
    return best_face(_session, rgb, LONG, THRESH)


def crop(rgb, box):
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1]) * MARGIN / 2
    x0, y0, x1, y1 = int(cx - half), int(cy - half), int(cx + half), int(cy + half)
    h, w = rgb.shape[:2]
    pad = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        pad[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return cv2.resize(pad, (S, S), interpolation=cv2.INTER_AREA)


def scene(rgb, box):
    h, w = rgb.shape[:2]
    s = S2 / max(w, h)
    nw, nh = round(w * s), round(h * s)
    out = np.zeros((S2, S2, 3), np.uint8)
    ox, oy = (S2 - nw) // 2, (S2 - nh) // 2
    out[oy : oy + nh, ox : ox + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    if box is not None:
        cx, cy = (box[0] + box[2]) / 2 * s + ox, (box[1] + box[3]) / 2 * s + oy
        hw, hh = (box[2] - box[0]) * s * MASK / 2, (box[3] - box[1]) * s * MASK / 2
        out[max(0, int(cy - hh)) : max(0, int(np.ceil(cy + hh))), max(0, int(cx - hw)) : max(0, int(np.ceil(cx + hw)))] = CLIP_MEAN
    return out


def process(job):
    clip_id, path, label, budget = job
    cap = cv2.VideoCapture(path)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if n <= 0:
        return clip_id, label, None
    idx = kept(n, budget)
    wanted, frames, i = set(idx), {}, 0
    while i <= max(idx):
        if not cap.grab():
            break
        if i in wanted:
            ok, bgr = cap.retrieve()
            if ok:
                frames[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        i += 1
    if any(k not in frames for k in wanted):
        return clip_id, label, None
    dets = {k: detect(f) for k, f in frames.items()}
    boxes = [dets[k] for k in idx]
    known = [b for b in boxes if b is not None]
    if not known:
        return clip_id, label, None
    last = known[0]
    filled = []
    for b in boxes:
        last = b if b is not None else last
        filled.append(last)
    face = np.stack([crop(frames[k], b) for k, b in zip(idx, filled)])
    scn = np.stack([scene(frames[k], b) for k, b in zip(idx, filled)])
    box_arr = np.array([b[:4] for b in filled], np.float32)
    return clip_id, label, (face, scn, np.array(idx, np.int32), box_arr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--store-frames", type=int, default=64, help="as dfer's prep setting")
    a = ap.parse_args()
    truth = [json.loads(l) for l in open(os.path.join(a.root, "synth_truth.jsonl"))]
    jobs = [(t["clip_id"], os.path.join(a.root, t["video"]), t["label"], a.store_frames) for t in truth]
    start = time.time()
    with h5py.File(a.out, "w") as f, Pool(a.workers, initializer=init, initargs=(patched_model(a.model),)) as pool:
        grow = lambda name, shape, dtype: f.create_dataset(name, (0, *shape), dtype, maxshape=(None, *shape))
        face, scn = grow("face", (S, S, 3), np.uint8), grow("scene", (S2, S2, 3), np.uint8)
        fi, fb = grow("frame_index", (), np.int32), grow("face_box", (4,), np.float32)
        lab, ids = grow("label", (), np.int64), grow("clip_id", (), h5py.string_dtype())
        start_ds, count_ds = grow("frame_start", (), np.int64), grow("frame_count", (), np.int64)
        n = rows = 0
        for clip_id, label, out in pool.imap(process, jobs, chunksize=1):
            if out is None:
                continue
            m = len(out[2])
            for ds in (face, scn, fi, fb):
                ds.resize(rows + m, axis=0)
            face[rows:], scn[rows:], fi[rows:], fb[rows:] = out[0], out[1], out[2], out[3]
            for ds in (lab, ids, start_ds, count_ds):
                ds.resize(n + 1, axis=0)
            lab[n], ids[n], start_ds[n], count_ds[n] = label, clip_id, rows, m
            n, rows = n + 1, rows + m
    print(json.dumps({"clips": len(jobs), "written": n, "seconds": time.time() - start}))


if __name__ == "__main__":
    main()
