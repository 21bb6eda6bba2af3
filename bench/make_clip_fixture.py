#!/usr/bin/env python3
"""Make the tiny CLIP reference fixture in tests/fixtures/clip-tiny/.

What it makes: a seeded Hugging Face `transformers.CLIPModel` with the real CLIP structure
(quick_gelu, pre-LN, causal text attention, eos pooling, the real 49,408-token vocabulary) but
tiny widths (text 32 wide x 2 layers, vision 48 wide x 4 layers, 32x32 images in 8x8 patches,
projection 32), and the outputs of `get_image_features` / `get_text_features` on seeded inputs:

  config.json          model.config.to_json_file (Hugging Face's own format)
  model.safetensors    the state dict with Hugging Face names, stored as float16; every parameter
                       was rounded to float16 before the expected outputs were computed, so the
                       f16 file widened to f32 is exactly the model that made them
  inputs.safetensors   pixel_values f32 [4,3,32,32]; input_ids i64 [3,77] (49406, random ids,
                       49407 at positions 5/17/40, then zeros: bench/clip_parity.py's convention)
  expected.safetensors f32, computed in float32 with torch.no_grad in eval mode:
                       image_embeds [4,32]  = get_image_features(pixel_values)
                       text_embeds  [3,32]  = get_text_features(input_ids)
                       text_hidden  [3,77,32] text last_hidden_state (after final_layer_norm)
                       image_pooled [4,48]  vision pooler_output (post_layernorm of the class
                                            token, before visual_projection)

The text features are pooled at the FIRST 49407 (end token) of each row (transformers does so
when config.eos_token_id != 2); the script checks it, checks that a reload of the f16 file
reproduces the expected outputs exactly, and checks the expected outputs against an independent
plain-torch implementation of the CLIP formulas.

Parameters are re-drawn after construction (transformers' own init is too small for a meaningful
check): linear / conv weights N(0, 1/fan_in), linear biases N(0, 0.05^2), token / position /
class embeddings N(0, 0.5^2), LayerNorm weights 1 + N(0, 0.1^2), LayerNorm biases N(0, 0.02^2),
logit_scale kept (then rounded to f16 like everything else). Attention uses the "eager" path.

Run (in a venv with torch, transformers, safetensors, numpy):
     python3 bench/make_clip_fixture.py [--out tests/fixtures/clip-tiny]
Deterministic: the same versions give the same bytes.
Made with: torch 2.15.0 (PyPI build 2.15.0+cu132, run on CPU), transformers 5.24.0, safetensors 0.8.0, numpy 2.4.6 (Python 3.11, CPU).
"""
import argparse
import hashlib
import math
import pathlib
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import CLIPConfig, CLIPModel

BOS, EOS = 49406, 49407
EOS_POSITIONS = [5, 17, 40]


def config() -> CLIPConfig:
    return CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                         num_hidden_layers=2, max_position_embeddings=77, bos_token_id=BOS, eos_token_id=EOS,
                         hidden_act="quick_gelu"),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=48, intermediate_size=96,
                           num_attention_heads=4, num_hidden_layers=4, hidden_act="quick_gelu"),
        projection_dim=32,
    )


def build(cfg: CLIPConfig) -> CLIPModel:
    cfg._attn_implementation = "eager"
    for sub in (cfg.text_config, cfg.vision_config):
        sub._attn_implementation = "eager"
    return CLIPModel(cfg).eval()


def redraw(model: CLIPModel) -> None:
    """Re-draw every parameter (in named_parameters order, seeded by the caller)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            is_norm = any(k in name for k in ("layer_norm", "layrnorm", "layernorm"))
            if name == "logit_scale":
                continue
            if is_norm and leaf == "weight":
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif is_norm and leaf == "bias":
                p.copy_(0.02 * torch.randn_like(p))
            elif "embedding" in name and p.dim() != 4:  # token, position, class embeddings
                p.copy_(0.5 * torch.randn_like(p))
            elif leaf == "weight":  # linear [out, in] and patch conv [out, c, kh, kw]
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) / math.sqrt(fan_in))
            elif leaf == "bias":
                p.copy_(0.05 * torch.randn_like(p))
            else:
                raise SystemExit(f"no rule for parameter {name} {tuple(p.shape)}")
        for p in model.parameters():
            p.data = p.data.half().float()


def inputs() -> dict:
    pixels = torch.randn(4, 3, 32, 32)
    ids = torch.zeros(3, 77, dtype=torch.int64)
    for i, pos in enumerate(EOS_POSITIONS):
        ids[i, 0] = BOS
        ids[i, 1:pos] = torch.randint(0, 49405, (pos - 1,))
        ids[i, pos] = EOS
    return {"pixel_values": pixels, "input_ids": ids}


def pooled(x):
    return getattr(x, "pooler_output", x)


def run(model: CLIPModel, inp: dict) -> dict:
    with torch.no_grad():
        px, ids = inp["pixel_values"], inp["input_ids"]
        text_out = model.text_model(input_ids=ids, return_dict=True)
        vis_out = model.vision_model(pixel_values=px, return_dict=True)
        return {
            "image_embeds": pooled(model.get_image_features(pixel_values=px)).float().contiguous(),
            "text_embeds": pooled(model.get_text_features(input_ids=ids)).float().contiguous(),
            "text_hidden": text_out.last_hidden_state.float().contiguous(),
            "image_pooled": vis_out.pooler_output.float().contiguous(),
        }


def manual(sd: dict, cfg: CLIPConfig, inp: dict) -> dict:
    """CLIP from the formulas, with plain torch ops on the state dict (no transformers code)."""
    def ln(x, pre):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], sd[pre + ".weight"], sd[pre + ".bias"], 1e-5)

    def lin(x, pre, bias=True):
        y = x @ sd[pre + ".weight"].T
        return y + sd[pre + ".bias"] if bias else y

    def encoder(x, pre, n_layers, heads, causal):
        b, t, d = x.shape
        hd = d // heads
        mask = torch.full((t, t), float("-inf")).triu(1) if causal else torch.zeros(t, t)
        for l in range(n_layers):
            p = f"{pre}.encoder.layers.{l}"
            h = ln(x, p + ".layer_norm1")
            q = lin(h, p + ".self_attn.q_proj").view(b, t, heads, hd).transpose(1, 2) * hd ** -0.5
            k = lin(h, p + ".self_attn.k_proj").view(b, t, heads, hd).transpose(1, 2)
            v = lin(h, p + ".self_attn.v_proj").view(b, t, heads, hd).transpose(1, 2)
            a = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1) @ v
            x = x + lin(a.transpose(1, 2).reshape(b, t, d), p + ".self_attn.out_proj")
            h = lin(ln(x, p + ".layer_norm2"), p + ".mlp.fc1")
            h = h * torch.sigmoid(1.702 * h)  # quick_gelu
            x = x + lin(h, p + ".mlp.fc2")
        return x

    tc, vc = cfg.text_config, cfg.vision_config
    ids, px = inp["input_ids"], inp["pixel_values"]
    x = sd["text_model.embeddings.token_embedding.weight"][ids]
    x = x + sd["text_model.embeddings.position_embedding.weight"][: ids.shape[1]]
    x = encoder(x, "text_model", tc.num_hidden_layers, tc.num_attention_heads, causal=True)
    hidden = ln(x, "text_model.final_layer_norm")
    eos_pos = [row.index(EOS) for row in ids.tolist()]  # first end token of each row
    text = torch.stack([hidden[i, p] for i, p in enumerate(eos_pos)]) @ sd["text_projection.weight"].T

    patches = torch.nn.functional.conv2d(px, sd["vision_model.embeddings.patch_embedding.weight"],
                                         stride=vc.patch_size)  # no bias
    patches = patches.flatten(2).transpose(1, 2)
    cls = sd["vision_model.embeddings.class_embedding"].expand(px.shape[0], 1, -1)
    x = torch.cat([cls, patches], dim=1) + sd["vision_model.embeddings.position_embedding.weight"]
    x = ln(x, "vision_model.pre_layrnorm")
    x = encoder(x, "vision_model", vc.num_hidden_layers, vc.num_attention_heads, causal=False)
    img_pooled = ln(x[:, 0], "vision_model.post_layernorm")
    image = img_pooled @ sd["visual_projection.weight"].T
    return {"image_embeds": image, "text_embeds": text, "text_hidden": hidden, "image_pooled": img_pooled,
            "eos_pos": eos_pos}


def sha(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/clip-tiny"))
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    cfg = config()
    model = build(cfg)
    redraw(model)
    inp = inputs()
    exp = run(model, inp)

    sd = model.state_dict()
    dropped = [k for k in sd if k.endswith("position_ids")]
    weights = {k: v.detach().half().contiguous() for k, v in sd.items() if k not in dropped}
    for k, v in sd.items():
        if k not in dropped:
            assert torch.equal(weights[k].float(), v.float()), f"{k} not f16-exact"
    save_file(weights, out / "model.safetensors")
    model.config.to_json_file(out / "config.json")
    save_file(inp, out / "inputs.safetensors")
    save_file(exp, out / "expected.safetensors")

    # 1. the f16 file reloaded into a fresh model reproduces the expected outputs
    fresh = build(config())
    missing, unexpected = fresh.load_state_dict({k: v.float() for k, v in load_file(out / "model.safetensors").items()},
                                                strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing), (missing, unexpected)
    again = run(fresh, load_file(out / "inputs.safetensors"))
    stored = load_file(out / "expected.safetensors")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"dropped from the state dict: {dropped or 'none (position_ids are non-persistent buffers)'}")
    for k in stored:
        d = (again[k] - stored[k]).abs().max().item()
        print(f"reload f16 -> f32 {k:13s} {tuple(stored[k].shape)}: max |diff| = {d:.3e}, "
              f"max |value| = {stored[k].abs().max().item():.4f}, std = {stored[k].std().item():.4f}")
        assert d <= 1e-7, k

    # 2. independent plain-torch CLIP, and the pooling position
    man = manual({k: v.float() for k, v in load_file(out / "model.safetensors").items()}, cfg, inp)
    for k in stored:
        d = (man[k] - stored[k]).abs().max().item()
        print(f"manual formulas   {k:13s}: max |diff| = {d:.3e}")
        assert d <= 1e-5, k
    print(f"first 49407 per text row (pooled position): {man['eos_pos']}")
    assert man["eos_pos"] == EOS_POSITIONS
    tp = model.state_dict()["text_projection.weight"]
    for i, p in enumerate(EOS_POSITIONS):
        at_eos = (stored["text_hidden"][i, p] @ tp.T - stored["text_embeds"][i]).abs().max().item()
        last = (stored["text_hidden"][i, -1] @ tp.T - stored["text_embeds"][i]).abs().max().item()
        print(f"row {i}: |proj(text_hidden[{p}]) - text_embeds| = {at_eos:.3e}; at position 76 it would be {last:.3f}")
        assert at_eos <= 1e-6
    for f in sorted(out.iterdir()):
        print(f"{f.name:22s} {f.stat().st_size:9d} bytes  sha256 {sha(f)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
