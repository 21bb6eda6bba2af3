#!/usr/bin/env python3
"""PyTorch reference of dfer's OUS model (same modules and sizes as src/model/ous.rs), timed the
way `dfer bench train-step` times ours: one training step on random inputs, eager mode (bf16
autocast on CUDA, f32 on CPU as dfer), AdamW over the same parameter groups. Prints one JSON line
like dfer's.

The prompt pass runs the text tower over all 77 positions, as CoOp and DFER-CLIP do;
`--text-positions eot` stops at the last end-of-text token instead (exact under the causal mask,
what dfer does), to separate that saving from the rest.

Usage: python3 bench/ous_torch.py --device cpu|cuda --recipe frozen|finetune|cached --batch 8
       --frames 16 --steps 10 --warmup 3
Needs torch and transformers (4.x or 5.x, for the CLIP towers).
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel


class Lstm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lstm = nn.LSTM(d, d, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0]


class Block(nn.Module):
    """Pre-norm transformer block with quick-GELU (CLIP layout)."""

    def __init__(self, d, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        h = self.fc1(self.ln2(x))
        return x + self.fc2(h * torch.sigmoid(1.702 * h))


class CrossBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln_q, self.ln_kv, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, q, mem):
        kv = self.ln_kv(mem)
        x = q + self.attn(self.ln_q(q), kv, kv, need_weights=False)[0]
        h = self.fc1(self.ln2(x))
        return x + self.fc2(h * torch.sigmoid(1.702 * h))


class Ous(nn.Module):
    def __init__(self, clip, classes, frames, n_ctx=8, heads=8, pol_blocks=4, fusion_blocks=2, queries=4, sim=256):
        super().__init__()
        self.clip, self.pol_blocks = clip, pol_blocks
        e, w = clip.config.projection_dim, clip.config.vision_config.hidden_size
        tw = clip.config.text_config.hidden_size
        self.ctx = nn.Parameter(torch.randn(n_ctx, tw) * 0.02)
        # Token ids of "x x ... x <class>." (placeholder ids; sizes match the real prompts).
        ids = torch.zeros(classes, 77, dtype=torch.long)
        ids[:, 0], ids[:, 1:n_ctx + 1], ids[:, n_ctx + 1], ids[:, n_ctx + 2], ids[:, n_ctx + 3] = 49406, 343, 1000, 269, 49407
        ids[:, n_ctx + 1] += torch.arange(classes)
        self.register_buffer("ids", ids)
        self.eot, self.n_ctx = n_ctx + 3, n_ctx
        self.face_lstm, self.scene_lstm = Lstm(e), Lstm(e)
        self.cls = nn.Parameter(torch.randn(e) * 0.02)
        self.pos = nn.Parameter(torch.randn(frames + 1, e) * 0.02)
        self.frame_encoder = nn.ModuleList([Block(e, heads)])
        self.sim_conv = nn.Conv1d(e, e, 3, padding=1)
        self.sim_face, self.sim_scene = nn.Linear(e, sim), nn.Linear(e, sim)
        self.pol_proj, self.pol_head = nn.Linear(pol_blocks * w, e), nn.Linear(e, 3)
        self.queries = nn.Parameter(torch.randn(queries, e))
        self.fusion = nn.ModuleList([CrossBlock(e, heads) for _ in range(fusion_blocks)])
        self.fusion_ln, self.video_proj = nn.LayerNorm(e), nn.Linear(e, e)
        self.global_head = nn.Linear(e + 3, classes)

    def encode(self, face, scene):
        b, t = face.shape[:2]
        v = self.clip.vision_model(pixel_values=torch.cat([face, scene]).flatten(0, 1), output_hidden_states=True)
        emb = self.clip.visual_projection(v.pooler_output).view(2, b, t, -1)
        early = torch.stack([h.mean(1) for h in v.hidden_states[1:self.pol_blocks + 1]], 1)
        early = early[b * t:].view(b, t, self.pol_blocks, -1).mean(1)
        return emb[0], emb[1], early

    def text(self, positions):
        tm = self.clip.text_model
        x = tm.embeddings.token_embedding(self.ids[:, :positions])
        x = torch.cat([x[:, :1], self.ctx.expand(x.shape[0], -1, -1), x[:, 1 + self.n_ctx:]], 1)
        x = x + tm.embeddings.position_embedding.weight[:positions]
        mask = torch.full((positions, positions), float("-inf"), device=x.device).triu(1)[None, None]
        for layer in tm.encoder.layers:
            # transformers 5 merged the causal mask into attention_mask; 4.x takes both by keyword.
            if "causal_attention_mask" in layer.forward.__code__.co_varnames:
                out = layer(x, attention_mask=None, causal_attention_mask=mask)
            else:
                out = layer(x, attention_mask=mask)
            x = out[0] if isinstance(out, tuple) else out
        x = tm.final_layer_norm(x)
        return self.clip.text_projection(x[:, self.eot])

    def forward(self, vf, vs, early, positions):
        b = vf.shape[0]
        face = self.face_lstm(vf)
        tok = torch.cat([self.cls.expand(b, 1, -1), face], 1) + self.pos
        for blk in self.frame_encoder:
            tok = blk(tok)
        scene = self.scene_lstm(vs).mean(1)
        conv = self.sim_conv(tok[:, 1:].transpose(1, 2)).mean(2)
        sim = 1 - (F.normalize(self.sim_face(conv), dim=-1) * F.normalize(self.sim_scene(scene), dim=-1)).sum(1).mean()
        pol = self.pol_proj(early.flatten(1))
        pol = pol * torch.sigmoid(1.702 * pol)
        pol_logits = self.pol_head(pol)
        mem = torch.cat([tok, scene[:, None], pol[:, None]], 1)
        q = self.queries.expand(b, -1, -1)
        fused = sum(blk(q, mem) for blk in self.fusion)
        video = self.video_proj(self.fusion_ln(fused.mean(1)))
        text = self.text(positions)
        logits = self.clip.logit_scale.exp() * F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).t()
        glob = self.global_head(torch.cat([video, pol_logits.softmax(-1)], 1))
        return logits, pol_logits, glob, sim


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="frozen", choices=["frozen", "finetune", "cached"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    ap.add_argument("--text-positions", default="full", choices=["full", "eot"])
    a = ap.parse_args()
    dev = torch.device(a.device)
    cuda = a.device == "cuda"
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=512, intermediate_size=2048, num_attention_heads=8, num_hidden_layers=12,
                         hidden_act="quick_gelu"),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                           image_size=224, patch_size=16, hidden_act="quick_gelu"),
        projection_dim=512,
    )
    model = Ous(CLIPModel(cfg), 7, a.frames).to(dev)
    for p in model.clip.parameters():
        p.requires_grad_(False)
    groups = [{"params": [p for n, p in model.named_parameters() if not n.startswith("clip.") and n != "ctx"],
               "lr": 1e-4, "weight_decay": 0.01},
              {"params": [model.ctx], "lr": 1e-4, "weight_decay": 0.0}]
    if a.recipe == "finetune":
        vision = list(model.clip.vision_model.parameters()) + list(model.clip.visual_projection.parameters())
        for p in vision:
            p.requires_grad_(True)
        groups.append({"params": vision, "lr": 1e-6, "weight_decay": 0.01})
    opt = torch.optim.AdamW(groups)
    b, t = a.batch, a.frames
    face = torch.randn(b, t, 3, 224, 224, device=dev)
    scene = torch.randn(b, t, 3, 224, 224, device=dev)
    feats = (torch.randn(b, t, 512, device=dev), torch.randn(b, t, 512, device=dev), torch.randn(b, 4, 768, device=dev))
    labels = torch.arange(b, device=dev) % 7
    pol = torch.tensor([2, 0, 1, 0, 2, 0, 0], device=dev)[labels]

    positions = 77 if a.text_positions == "full" else model.eot + 1

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            if a.recipe == "cached":
                vf, vs, early = feats
            elif a.recipe == "frozen":
                with torch.no_grad():
                    vf, vs, early = model.encode(face, scene)
            else:
                vf, vs, early = model.encode(face, scene)
            logits, pl, gl, sim = model(vf.float(), vs.float(), early.float(), positions)
            loss = F.cross_entropy(logits, labels) + 0.5 * F.cross_entropy(gl, labels) + 0.5 * sim \
                + 0.5 * F.cross_entropy(pl, pol)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    secs = (time.perf_counter() - t0) / a.steps
    # On CPU: the process's peak resident memory (ru_maxrss, KiB on Linux).
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": "pytorch-eager-bf16" if cuda else "pytorch-eager-f32", "device": a.device,
                      "recipe": a.recipe, "batch": b, "frames": t, "steps": a.steps, "threads": torch.get_num_threads(),
                      "text_positions": positions, "seconds_per_step": secs, "clips_per_s": b / secs,
                      "peak_mib": peak}))


if __name__ == "__main__":
    main()
