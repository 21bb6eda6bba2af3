"""A cheaper detector, measured before it is built: CenterFace quantized to int8 against the
float model dfer runs, on the prep benchmark's footage (a benchmark, not a test).

The float model is patched as dfer patches it (bench/python_prep.py's patched_model) and
converted to opset 13 (per-channel quantization needs it); onnxruntime's static quantization
(QDQ, int8 weights per channel, uint8 activations, MinMax calibration) calibrates on one frame
of every clip of the sets given, at the long sides 352 and 640 in turn. Both models then run on
two other frames of every clip (one thread, as a prep worker runs): the time per run at each
long side, and whether the int8 model finds the float model's best face (score x sqrt(area),
as bench/python_prep.py picks it; the float model at score threshold 0.4, dfer's default, the
int8 one at each of --int8-thresholds) within IoU 0.5. --float-heads keeps the four output
convolutions and the sigmoid in float.

Usage: python bench/detector_int8.py --model ~/.cache/dfer/centerface.onnx --bench-out BENCH_OUT
       [--sets slow,fast,moving,film] [--int8-thresholds 0.4,0.35,0.3] [--float-heads] [--work DIR]
BENCH_OUT is what bench/prep_bench.sh wrote (its venv has every package this needs).
"""

import argparse
import glob
import os
import random
import time

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from python_prep import best_face, input_tensor, patched_model

FLOAT_THRESHOLD = 0.4
LONG_SIDES = (352, 640)


def frames(bench_out, sets, per_clip, offset):
    """`per_clip` RGB frames of every clip of `sets`, evenly spaced from frame `offset`."""
    out = []
    for s in sets:
        for video in sorted(glob.glob(os.path.join(bench_out, s, "data-*", "Clip", "original", "*.mp4"))):
            cap = cv2.VideoCapture(video)
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            for k in range(per_clip):
                cap.set(cv2.CAP_PROP_POS_FRAMES, (offset + k * n // per_clip) % n)
                ok, bgr = cap.read()
                if ok:
                    out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            cap.release()
    return out


class Calibration(CalibrationDataReader):
    def __init__(self, images):
        sides = [LONG_SIDES[i % len(LONG_SIDES)] for i in range(len(images))]
        self.feed = iter([{"input.1": input_tensor(f, s)} for f, s in zip(images, sides)])

    def get_next(self):
        return next(self.feed, None)


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def output_nodes(model):
    """Names every node (the model's are empty) and returns those of the four output
    convolutions and the sigmoid after the heatmap's."""
    for i, n in enumerate(model.graph.node):
        n.name = f"node{i}"
    made_by = {o: n for n in model.graph.node for o in n.output}
    heads = []
    for out in model.graph.output:
        n = made_by[out.name]
        heads.append(n.name)
        if n.op_type == "Sigmoid":
            heads.append(made_by[n.input[0]].name)
    return heads


def agreement(f, q, test, long_side, threshold):
    """Frames with a float face; of them, int8 within IoU 0.5 and int8 with none; int8 faces
    where the float model has none; the median IoU."""
    faces = within = missed = extra = 0
    ious = []
    for img in test:
        bf, bq = best_face(f, img, long_side, FLOAT_THRESHOLD), best_face(q, img, long_side, threshold)
        if bf is None:
            extra += bq is not None
            continue
        faces += 1
        if bq is None:
            missed += 1
            continue
        ious.append(iou(bf, bq))
        within += ious[-1] >= 0.5
    return faces, within, missed, extra, float(np.median(ious))


def ms_per_run(sess, x, runs=20):
    for _ in range(3):
        sess.run(None, {"input.1": x})
    t = time.perf_counter()
    for _ in range(runs):
        sess.run(None, {"input.1": x})
    return (time.perf_counter() - t) / runs * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--bench-out", required=True)
    ap.add_argument("--sets", default="slow,fast,moving,film")
    ap.add_argument("--int8-thresholds", default="0.4")
    ap.add_argument("--float-heads", action="store_true")
    ap.add_argument("--work", default=None, help="where the two models are written (default BENCH_OUT/int8)")
    a = ap.parse_args()
    sets = a.sets.split(",")
    work = a.work or os.path.join(a.bench_out, "int8")
    os.makedirs(work, exist_ok=True)
    fp32, int8 = os.path.join(work, "fp32.onnx"), os.path.join(work, "int8.onnx")
    model = version_converter.convert_version(onnx.load_from_string(patched_model(a.model)), 13)
    heads = output_nodes(model)
    onnx.save(model, fp32)
    calib = frames(a.bench_out, sets, 1, 5)
    random.Random(0).shuffle(calib)
    quantize_static(fp32, int8, Calibration(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=heads if a.float_heads else [])
    f, q = session(fp32), session(int8)
    test = frames(a.bench_out, sets, 2, 17)
    print(f"{len(calib)} calibration frames, {len(test)} test frames ({','.join(sets)}), one thread, "
          f"outputs {'float' if a.float_heads else 'int8'}")
    print("| long side | input | float ms/run | int8 ms/run | int8 threshold | frames with a float face | "
          "int8 face within IoU 0.5 | int8 finds none | int8 face where float has none | median IoU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for long_side in LONG_SIDES:
        x = input_tensor(test[0], long_side)
        t_f, t_q = ms_per_run(f, x), ms_per_run(q, x)
        for threshold in [float(t) for t in a.int8_thresholds.split(",")]:
            faces, within, missed, extra, median = agreement(f, q, test, long_side, threshold)
            print(f"| {long_side} | {x.shape[3]}x{x.shape[2]} | {t_f:.1f} | {t_q:.1f} | {threshold} | {faces} | "
                  f"{within} | {missed} | {extra} | {median:.3f} |")


if __name__ == "__main__":
    main()
