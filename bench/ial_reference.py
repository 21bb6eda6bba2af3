#!/usr/bin/env python3
"""Make tests/fixtures/ial_reference.json: the parameter count and seeded forward passes of Li et
al.'s IAL + GCA network (AAAI 2023, arXiv 2208.10335) as their public code builds it, for dfer's
`model.method = "ial"` to be checked against (src/model/ial_net.rs, its tests).

Their code is imported from a checkout of https://github.com/muse1998/IAL-for-Facial-Expression-Recognition
given with --repo (its modules.py and final_model.py); nothing of it is copied here. Their
Transformer builds a visualisation map with `.cuda()`; on a CPU-only torch this script makes
`Tensor.cuda` return the tensor itself (nothing else is patched).

What it writes (small: no weights):
  parameter_count  total: their `sum(p.numel() for p in model.parameters())` for GenerateModel()
                   (7 classes); unused: each parameter the forward pass never reads (found by a
                   backward pass of all three outputs: no gradient), with its size; used: the rest.
  formula          how every parameter and buffer was set, and the input (below; dfer's test
                   computes the same values).
  train / eval     fc_f logits and the auxiliary logits of layers 2 and 3 (`logits2`, `logits3`
                   of their ResNet.forward), batch statistics (model.train()) and running
                   statistics (model.eval()); train also holds two BatchNorm layers' running
                   statistics after that training-mode pass (momentum 0.1, unbiased variance).

The formula. For a tensor named n (their state_dict name) and flat index i:
  k(n) = sum over the name's bytes b_j (j from 0) of (j + 1) * b_j, mod 10007
  u    = ((i * 7919 + k(n) * 104729) mod 2003) / 1001 - 1
  value = 1 + 0.5 u           names ending in running_var
          0.1 u               names ending in running_mean
          1 + 0.1 u           1-D names ending in weight (BatchNorm, LayerNorm)
          0.1 u               1-D names ending in bias
          0.5 u               names containing pos_embedding
          u * sqrt(3 / fan_in) otherwise, fan_in = numel / shape[0]
  computed in float64, stored as float32. Input [2, 16, 3, 112, 112], flat index i:
  pixel = ((i * 1103515245 + 12345) mod 2^31) >> 23 (0..255), divided by 255 in float32.

Run (in a venv with torch and einops):
  python3 bench/ial_reference.py --repo PATH/TO/IAL-for-Facial-Expression-Recognition \
      [--out tests/fixtures/ial_reference.json]
Made with: torch 2.15.0 (PyPI build 2.15.0+cu132, run on CPU), einops 0.8.2, Python 3.11; their
repository at commit 39a24b6.
"""
import argparse
import json
import math
import pathlib
import subprocess
import sys

import torch

BATCH, FRAMES, CLASSES, SIZE = 2, 16, 7, 112
RUNNING = ["s_former.bn1", "s_former.layer4.2.bn2"]


def name_key(name: str) -> int:
    return sum((j + 1) * b for j, b in enumerate(name.encode())) % 10007


def formula(name: str, shape) -> torch.Tensor:
    n = math.prod(shape)
    k = name_key(name)
    i = torch.arange(n, dtype=torch.int64)
    u = ((i * 7919 + k * 104729) % 2003).to(torch.float64) / 1001 - 1
    if name.endswith("running_var"):
        v = 1 + 0.5 * u
    elif name.endswith("running_mean"):
        v = 0.1 * u
    elif len(shape) == 1 and name.endswith("weight"):
        v = 1 + 0.1 * u
    elif len(shape) == 1 and name.endswith("bias"):
        v = 0.1 * u
    elif "pos_embedding" in name:
        v = 0.5 * u
    else:
        v = u * math.sqrt(3 / (n / shape[0]))
    return v.to(torch.float32).reshape(shape)


def clip_input() -> torch.Tensor:
    n = BATCH * FRAMES * 3 * SIZE * SIZE
    i = torch.arange(n, dtype=torch.int64)
    pixels = ((i * 1103515245 + 12345) % (1 << 31)) >> 23
    return (pixels.to(torch.float32) / 255).reshape(BATCH, FRAMES, 3, SIZE, SIZE)


def rows(t: torch.Tensor):
    return [[float(v) for v in row] for row in t.detach()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", required=True, help="checkout of their repository (modules.py, final_model.py)")
    ap.add_argument("--out", default="tests/fixtures/ial_reference.json")
    args = ap.parse_args()
    repo = pathlib.Path(args.repo).resolve()
    sys.path.insert(0, str(repo))
    torch.Tensor.cuda = lambda self, *a, **k: self  # their Transformer's map: `.cuda()`
    from final_model import GenerateModel  # noqa: E402 (their code, from --repo)

    torch.manual_seed(0)
    model = GenerateModel()
    total = sum(p.numel() for p in model.parameters())

    # Unused parameters: no gradient from any of the three outputs of a forward pass.
    model.train()
    out, _, _, aux2, aux3 = model(clip_input())
    (out.sum() + aux2.sum() + aux3.sum()).backward()
    unused = {n: p.numel() for n, p in model.named_parameters() if p.grad is None}
    model.zero_grad(set_to_none=True)

    with torch.no_grad():
        for n, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not n.endswith("num_batches_tracked"):
                t.copy_(formula(n, tuple(t.shape)))
    x = clip_input()
    result = {}
    with torch.no_grad():
        model.eval()
        logits, _, _, aux2, aux3 = model(x)
        result["eval"] = {"logits": rows(logits), "aux2": rows(aux2), "aux3": rows(aux3)}
        model.train()
        logits, _, _, aux2, aux3 = model(x)
        buffers = dict(model.named_buffers())
        running = {f"{m}.{b}": [float(v) for v in buffers[f"{m}.{b}"]] for m in RUNNING
                   for b in ["running_mean", "running_var"]}
        result["train"] = {"logits": rows(logits), "aux2": rows(aux2), "aux3": rows(aux3), "running": running}

    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    fixture = {
        "made_by": "python3 bench/ial_reference.py --repo <their checkout>",
        "their_commit": commit,
        "torch": torch.__version__,
        "parameter_count": {"total": total, "used": total - sum(unused.values()), "unused": unused},
        "input": {"batch": BATCH, "frames": FRAMES, "classes": CLASSES, "size": SIZE,
                  "pixel": "((i * 1103515245 + 12345) mod 2^31) >> 23, divided by 255"},
        "formula": "see bench/ial_reference.py",
        **result,
    }
    pathlib.Path(args.out).write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"{args.out}: {total} parameters ({fixture['parameter_count']['used']} used); "
          f"eval logits[0] {result['eval']['logits'][0][:3]}")


if __name__ == "__main__":
    main()
