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
  gradients        for each mode, the L2 norm of every used parameter's gradient of
                   CE(logits) + 0.05 CE(aux2) + 0.5 CE(aux3) for labels [3, 5] (layer 3's
                   auxiliary weight is 0.5 here, not their 0, so its classifier is checked too),
                   computed in float64 on a fresh model set by the formula; f32_spread: how far
                   (relative) the same norms in float32 stray from them; perturbed_spread: how
                   far they move when the input moves by a relative 1e-6 (ReLU and max-pool
                   switches: the whole network's gradients are ill-conditioned, so a comparison
                   of them is coarse).
  block_gradients  layer 3's block alone (block_gradients below), both modes, float64, with
                   f32_spread, on one clip of 16 frames from the input seed (of 1 to 60) whose
                   ReLU inputs stay farthest from 0 (seed, relu_margin), so that float32
                   rounding flips no ReLU and the comparison can be tight.

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
LABELS = torch.tensor([3, 5])


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


def set_by_formula(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for n, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not n.endswith("num_batches_tracked"):
                t.copy_(formula(n, tuple(t.shape)).to(t.dtype))


def gradient_norms(make, dtype, mode: str, wobble: float = 0.0):
    """The loss and every used parameter's gradient norm of CE(logits) + 0.05 CE(aux2)
    + 0.5 CE(aux3) for LABELS, in `mode`, on a fresh model in `dtype` set by the formula."""
    model = make().to(dtype)
    set_by_formula(model)
    model.train(mode == "train")
    x = clip_input().to(dtype)
    if wobble:
        x = x * (1 + wobble * torch.sin(torch.arange(x.numel(), dtype=dtype).reshape(x.shape)))
    logits, _, _, aux2, aux3 = model(x)
    ce = torch.nn.functional.cross_entropy
    loss = ce(logits, LABELS) + 0.05 * ce(aux2, LABELS) + 0.5 * ce(aux3, LABELS)
    loss.backward()
    return loss.item(), {n: p.grad.norm().item() for n, p in model.named_parameters() if p.grad is not None}


def pattern(n: int, seed: int) -> torch.Tensor:
    """((i * 7919 + seed * 104729) mod 10007) / 10007 in float64, i the flat index."""
    i = torch.arange(n, dtype=torch.int64)
    return ((i * 7919 + seed * 104729) % 10007).to(torch.float64) / 10007


def block_input(seed: int, dtype) -> torch.Tensor:
    """One clip of 16 frames of layer 3's input: pattern(seed) [16, 128, 14, 14]."""
    return pattern(16 * 128 * 14 * 14, seed).reshape(16, 128, 14, 14).to(dtype)


def relu_margin(block, x) -> float:
    """The smallest |value| entering a ReLU of the block (after bn1, GCA's fc1, the shortcut's
    sum), its forward written out as their BasicBlock.forward does it."""
    b = block[0]
    with torch.no_grad():
        first = b.bn1(b.conv1(x))
        out = b.bn2(b.conv2(torch.relu(first)))
        g = b.gc(out)
        hidden = b.fc1[0](g)
        s = 2 * b.fc2(torch.relu(hidden))
        c = s.shape[1]
        w = torch.sqrt(s * s.view(1, 16, c, 1, 1).mean(dim=1).unsqueeze(1).repeat(1, 16, 1, 1, 1).view(-1, c, 1, 1) + 1e-5)
        last = out * w + b.downsample(x)
    return min(t.abs().min().item() for t in [first, hidden, last])


def block_seed(make) -> tuple:
    """Of input seeds 1 to 60, the one whose float64 block keeps its ReLU inputs farthest from 0
    (the smaller margin of the two modes): a gradient through a ReLU jumps where its input
    changes sign, and float32 rounding (a few 1e-7 here) must not decide which side an input
    falls on."""
    model = make().to(torch.float64)
    best = (0.0, 0)
    for seed in range(1, 61):
        margins = []
        for mode in ["train", "eval"]:
            set_by_formula(model)  # a training-mode pass moves the running statistics
            block = model.s_former.layer3
            block.train(mode == "train")
            margins.append(relu_margin(block, block_input(seed, torch.float64)))
        best = max(best, (min(margins), seed))
    return best[1], best[0]


def block_gradients(make, dtype, mode: str, seed: int):
    """Layer 3's block alone (their BasicBlock, 128 -> 256 channels, stride 2, GCA) of a model
    set by the formula, on x = block_input(seed): the loss
    sum(out * (pattern(seed + 1) - 0.5)) + sum(aux * (pattern(seed + 2) - 0.5)) and the gradient
    norms of the input and of every parameter."""
    model = make().to(dtype)
    set_by_formula(model)
    block = model.s_former.layer3
    block.train(mode == "train")
    x = block_input(seed, dtype).requires_grad_()
    out, aux = block((x, 0))
    r = (pattern(out.numel(), seed + 1) - 0.5).reshape(out.shape).to(dtype)
    r2 = (pattern(aux.numel(), seed + 2) - 0.5).reshape(aux.shape).to(dtype)
    loss = (out * r).sum() + (aux * r2).sum()
    loss.backward()
    norms = {f"s_former.layer3.{n}": p.grad.norm().item() for n, p in block.named_parameters() if p.grad is not None}
    norms["input"] = x.grad.norm().item()
    return loss.item(), norms


def perturbed_spread(make, mode: str, base) -> float:
    """How far (relative) the float64 gradient norms move when the input moves by a relative
    1e-6 (times sin of the flat index): ReLU and max-pool switches make them jump."""
    _, moved = gradient_norms(make, torch.float64, mode, wobble=1e-6)
    return max(abs(moved[n] - v) / v for n, v in base.items())


def spread(norms32, norms) -> float:
    return max(abs(norms32[n] - v) / v for n, v in norms.items())


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

    set_by_formula(model)
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
    # Gradient norms in both modes, from float64 copies of the model (this setting is
    # ill-conditioned enough that float32 itself strays from them: recorded as f32_spread).
    result["gradients"] = {"labels": LABELS.tolist()}
    seed, margin = block_seed(GenerateModel)
    result["block_gradients"] = {"seed": seed, "relu_margin": margin}
    for mode in ["train", "eval"]:
        (loss, norms), (_, norms32) = (gradient_norms(GenerateModel, torch.float64, mode),
                                       gradient_norms(GenerateModel, torch.float32, mode))
        result["gradients"][mode] = {"loss": loss, "norms": norms, "f32_spread": spread(norms32, norms),
                                     "perturbed_spread": perturbed_spread(GenerateModel, mode, norms)}
        (loss, norms), (_, norms32) = (block_gradients(GenerateModel, torch.float64, mode, seed),
                                       block_gradients(GenerateModel, torch.float32, mode, seed))
        result["block_gradients"][mode] = {"loss": loss, "norms": norms, "f32_spread": spread(norms32, norms)}

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
