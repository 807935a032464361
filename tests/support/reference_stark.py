"""An independent, functional re-statement of the official STARK forward pass, for tests only.

It reads an *official-layout* state_dict (keys as in the released files: backbone.0.body.*,
query_embed.weight, box_head.conv1_tl.0.weight, cls_head.layers.*) and computes the network with
torch.nn.functional and hand-written attention, following the official definitions:
DETR post-norm transformer, corner head with coordinates i * stride / img_size, score MLP.
It shares no code with stark.model, so agreement checks both the key mapping and our modules.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BLOCKS = {"resnet18": ("basic", (2, 2, 2)), "resnet34": ("basic", (3, 4, 6)),
          "resnet50": ("bottleneck", (3, 4, 6)), "resnet101": ("bottleneck", (3, 4, 23))}


def frozen_bn(x, sd, prefix, eps=1e-5):
    w, b = sd[prefix + ".weight"], sd[prefix + ".bias"]
    rm, rv = sd[prefix + ".running_mean"], sd[prefix + ".running_var"]
    return (x - rm[None, :, None, None]) / torch.sqrt(rv[None, :, None, None] + eps) * w[None, :, None, None] \
        + b[None, :, None, None]


def resnet(x, sd, name, p="backbone.0.body"):
    kind, layers = BLOCKS[name]
    x = F.relu(frozen_bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=2, padding=3), sd, f"{p}.bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for stage, blocks in enumerate(layers, start=1):
        for i in range(blocks):
            q = f"{p}.layer{stage}.{i}"
            stride = 2 if (stage > 1 and i == 0) else 1
            if f"{q}.downsample.0.weight" in sd:
                identity = frozen_bn(F.conv2d(x, sd[f"{q}.downsample.0.weight"], stride=stride), sd, f"{q}.downsample.1")
            else:
                identity = x
            if kind == "bottleneck":
                y = F.relu(frozen_bn(F.conv2d(x, sd[f"{q}.conv1.weight"]), sd, f"{q}.bn1"))
                y = F.relu(frozen_bn(F.conv2d(y, sd[f"{q}.conv2.weight"], stride=stride, padding=1), sd, f"{q}.bn2"))
                y = frozen_bn(F.conv2d(y, sd[f"{q}.conv3.weight"]), sd, f"{q}.bn3")
            else:
                y = F.relu(frozen_bn(F.conv2d(x, sd[f"{q}.conv1.weight"], stride=stride, padding=1), sd, f"{q}.bn1"))
                y = frozen_bn(F.conv2d(y, sd[f"{q}.conv2.weight"], padding=1), sd, f"{q}.bn2")
            x = F.relu(y + identity)
    return x


def sine_positions(mask, num_feats):
    not_mask = (~mask).float()
    y = not_mask.cumsum(1)
    x = not_mask.cumsum(2)
    y = y / (y[:, -1:, :] + 1e-6) * 2 * math.pi
    x = x / (x[:, :, -1:] + 1e-6) * 2 * math.pi
    out = []
    for coord in (y, x):
        chans = []
        for c in range(num_feats):
            freq = 10000 ** (2 * (c // 2) / num_feats)
            chans.append(torch.sin(coord / freq) if c % 2 == 0 else torch.cos(coord / freq))
        out.append(torch.stack(chans, dim=1))
    return torch.cat(out, dim=1)  # [B, 2F, H, W]


def attention(q_in, k_in, v_in, sd, p, nheads, key_padding=None):
    """Multi-head attention from in_proj/out_proj weights. Inputs [L, B, d]."""
    d = q_in.shape[-1]
    w, b = sd[f"{p}.in_proj_weight"], sd[f"{p}.in_proj_bias"]
    q = q_in @ w[:d].T + b[:d]
    k = k_in @ w[d:2 * d].T + b[d:2 * d]
    v = v_in @ w[2 * d:].T + b[2 * d:]
    lq, bsz, _ = q.shape
    lk = k.shape[0]
    hd = d // nheads
    q = q.reshape(lq, bsz, nheads, hd).permute(1, 2, 0, 3)
    k = k.reshape(lk, bsz, nheads, hd).permute(1, 2, 0, 3)
    v = v.reshape(lk, bsz, nheads, hd).permute(1, 2, 0, 3)
    logits = q @ k.transpose(-1, -2) / math.sqrt(hd)  # [B, h, Lq, Lk]
    if key_padding is not None:
        logits = logits.masked_fill(key_padding[:, None, None, :], float("-inf"))
    out = logits.softmax(-1) @ v  # [B, h, Lq, hd]
    out = out.permute(2, 0, 1, 3).reshape(lq, bsz, d)
    return out @ sd[f"{p}.out_proj.weight"].T + sd[f"{p}.out_proj.bias"]


def layer_norm(x, sd, p):
    return F.layer_norm(x, x.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"])


def ffn(x, sd, p):
    return F.relu(x @ sd[f"{p}.linear1.weight"].T + sd[f"{p}.linear1.bias"]) @ sd[f"{p}.linear2.weight"].T \
        + sd[f"{p}.linear2.bias"]


def embed(img, mask, sd, backbone_name, d_model):
    feat = resnet(img, sd, backbone_name)
    m = F.interpolate(mask[None].float(), size=feat.shape[-2:]).bool()[0]
    pos = sine_positions(m, d_model // 2)
    feat = F.conv2d(feat, sd["bottleneck.weight"], sd["bottleneck.bias"])
    return feat.flatten(2).permute(2, 0, 1), m.flatten(1), pos.flatten(2).permute(2, 0, 1)


def official_forward(sd, templates, template_masks, search, search_mask, *, backbone_name, d_model,
                     nheads, enc_layers, dec_layers, search_size):
    parts = [embed(z, m, sd, backbone_name, d_model) for z, m in zip(templates, template_masks)]
    parts.append(embed(search, search_mask, sd, backbone_name, d_model))
    src = torch.cat([p[0] for p in parts])
    mask = torch.cat([p[1] for p in parts], dim=1)
    pos = torch.cat([p[2] for p in parts])
    for i in range(enc_layers):
        p = f"transformer.encoder.layers.{i}"
        src = layer_norm(src + attention(src + pos, src + pos, src, sd, f"{p}.self_attn", nheads, mask), sd, f"{p}.norm1")
        src = layer_norm(src + ffn(src, sd, p), sd, f"{p}.norm2")
    memory = src
    bsz = search.shape[0]
    query_pos = sd["query_embed.weight"][:, None, :].repeat(1, bsz, 1)
    tgt = torch.zeros_like(query_pos)
    for i in range(dec_layers):
        p = f"transformer.decoder.layers.{i}"
        tgt = layer_norm(tgt + attention(tgt + query_pos, tgt + query_pos, tgt, sd, f"{p}.self_attn", nheads), sd, f"{p}.norm1")
        tgt = layer_norm(tgt + attention(tgt + query_pos, memory + pos, memory, sd, f"{p}.multihead_attn", nheads, mask),
                         sd, f"{p}.norm2")
        tgt = layer_norm(tgt + ffn(tgt, sd, p), sd, f"{p}.norm3")
    hs = layer_norm(tgt, sd, "transformer.decoder.norm")  # [1, B, d]

    feat_sz = search_size // 16
    enc = memory[-feat_sz * feat_sz:].transpose(0, 1)  # [B, HW, d]
    dec = hs.permute(1, 2, 0)  # [B, d, 1]
    att = enc @ dec  # [B, HW, 1]
    fused = (enc * att).permute(0, 2, 1).reshape(bsz, d_model, feat_sz, feat_sz)
    stride = search_size / feat_sz
    idx = torch.arange(feat_sz).float() * stride
    coord_x = idx.repeat(feat_sz)
    coord_y = idx.repeat_interleave(feat_sz)
    corners = []
    for branch in ("tl", "br"):
        x = fused
        for k in range(1, 5):
            p = f"box_head.conv{k}_{branch}"
            x = F.conv2d(x, sd[f"{p}.0.weight"], sd[f"{p}.0.bias"], padding=1)
            x = F.batch_norm(x, sd[f"{p}.1.running_mean"], sd[f"{p}.1.running_var"], sd[f"{p}.1.weight"],
                             sd[f"{p}.1.bias"], training=False, eps=1e-5)
            x = F.relu(x)
        x = F.conv2d(x, sd[f"box_head.conv5_{branch}.weight"], sd[f"box_head.conv5_{branch}.bias"])
        prob = x.flatten(1).softmax(1)
        corners += [(prob * coord_x).sum(1), (prob * coord_y).sum(1)]
    x1, y1, x2, y2 = (c / search_size for c in corners)
    out = {"pred_boxes": torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=1)}
    if "cls_head.layers.0.weight" in sd:
        h = hs[0]
        n = sum(1 for k in sd if k.startswith("cls_head.layers.") and k.endswith(".weight"))
        for i in range(n):
            h = h @ sd[f"cls_head.layers.{i}.weight"].T + sd[f"cls_head.layers.{i}.bias"]
            if i < n - 1:
                h = F.relu(h)
        out["pred_logits"] = h[:, 0]
    return out
