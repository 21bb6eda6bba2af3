#!/usr/bin/env python3
"""Numeric parity of dfer's CLIP towers with Hugging Face transformers' CLIPModel.

Builds a ViT-B/16 CLIPModel with random weights (seeded), saves its state dict as safetensors,
runs `get_image_features` / `get_text_features` on random pixels and token ids, runs
`dfer bench clip-features` on the same files and compares. Exit 1 when the largest absolute
difference exceeds the tolerance (default 1e-4, f32).

With `--dtype bf16` (or f16) dfer's image tower computes in that dtype, as the frozen tower does
in training on CUDA, and is compared with transformers in f32. Half precision has no fixed
tolerance of its own, so the yardstick is transformers' own image tower cast to the same dtype:
dfer passes when its error against f32 is at most `--half-factor` (2) times transformers' error
against f32 on the same weights and inputs. The text tower stays f32 and keeps the f32 tolerance.

Usage: python3 bench/clip_parity.py --dfer dist/gpu/dfer --device cuda --out bench-out/parity
       python3 bench/clip_parity.py --dfer dist/gpu/dfer --device cuda --dtype bf16
Needs torch, transformers and safetensors.
"""
import argparse
import pathlib
import subprocess
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPConfig, CLIPModel


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dfer", default="target/release/dfer")
    ap.add_argument("--device", default="cpu", help="device for both sides: cpu or cuda")
    ap.add_argument("--out", default="bench-out/parity")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="f32 tolerance")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"], help="dfer's image-tower dtype")
    ap.add_argument("--half-factor", type=float, default=2.0,
                    help="half precision: dfer's image error may be this many times transformers' own")
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                         num_hidden_layers=12, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                         hidden_act="quick_gelu"),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                           image_size=224, patch_size=16, hidden_act="quick_gelu"),
        projection_dim=512,
    )
    dev = torch.device("cuda" if a.device.startswith("cuda") else "cpu")
    model = CLIPModel(cfg).eval().to(dev)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, out / "weights.safetensors")
    pixels = torch.randn(4, 3, 224, 224)
    ids = torch.zeros(3, 77, dtype=torch.int64)
    for i, length in enumerate([5, 17, 40]):
        ids[i, 0] = 49406
        ids[i, 1:length - 1] = torch.randint(0, 49405, (length - 2,))
        ids[i, length - 1] = 49407
    save_file({"pixel_values": pixels, "input_ids": ids}, out / "inputs.safetensors")
    with torch.no_grad():
        img = model.get_image_features(pixel_values=pixels.to(dev))
        txt = model.get_text_features(input_ids=ids.to(dev))
    img = getattr(img, "pooler_output", img).float().cpu()
    txt = getattr(txt, "pooler_output", txt).float().cpu()
    image_tolerance = a.tolerance
    if a.dtype != "f32":
        half = {"bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]
        with torch.no_grad():
            img_half = model.to(half).get_image_features(pixel_values=pixels.to(dev, half))
        img_half = getattr(img_half, "pooler_output", img_half).float().cpu()
        own = (img_half - img).abs().max().item()
        image_tolerance = a.half_factor * own
        print(f"transformers' own image tower in {a.dtype}: max |{a.dtype} - f32| = {own:.3e}; "
              f"dfer's image tolerance {a.half_factor:g} x that = {image_tolerance:.3e}")
    subprocess.run([a.dfer, "bench", "clip-features", "--weights", str(out / "weights.safetensors"),
                    "--inputs", str(out / "inputs.safetensors"), "--out", str(out / "ours.safetensors"),
                    "--device", a.device, "--dtype", a.dtype], check=True)
    ours = load_file(out / "ours.safetensors")
    worst, ok = 0.0, True
    for name, ref, tol in [("image_embeds", img, image_tolerance), ("text_embeds", txt, a.tolerance)]:
        diff = (ours[name].float() - ref).abs().max().item()
        scale = ref.abs().max().item()
        print(f"{name}: shape {tuple(ref.shape)}, max |ours - transformers f32| = {diff:.3e} "
              f"(max |value| {scale:.3f}, tolerance {tol:.1e})")
        worst = max(worst, diff)
        ok = ok and diff <= tol
    print(f"parity {'OK' if ok else 'FAILED'}: worst {worst:.3e}, image tower {a.dtype}, device {a.device}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
