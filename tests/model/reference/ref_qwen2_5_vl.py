#!/usr/bin/python3
"""Float64 NumPy forward of Qwen2.5-VL (Qwen2_5_VLForConditionalGeneration), written from the
published definition (Hugging Face transformers: Qwen2VLImageProcessor, modeling_qwen2_5_vl.py's
vision tower, get_window_index, rot_pos_emb, get_rope_index, apply_multimodal_rotary_pos_emb),
independently of dpserve's C++.

`breaks` names deliberate deviations, so a test can show its tolerance catches each of them:
  full_attention   every vision block attends over the whole image (windows ignored)
  window_2x        windows twice as wide as window_size says
  rope2d_swap      the vision RoPE takes (col, row) instead of (row, col)
  mrope_swap       M-RoPE's height frequencies follow the width position and vice versa
  mrope_1d         M-RoPE ignored: every token at its sequence index (plain 1-D RoPE)
  merge_gelu_tanh  the merger's GELU in its tanh approximation
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_forward import read_model_folder, rms_norm, silu  # noqa: E402  (file readers and two one-liners)

MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
STD = np.array([0.26862954, 0.26130258, 0.27577711])


def pixel_values(img, patch=14, temporal=2, merge=2, mean=MEAN, std=STD):
    """Qwen2VLImageProcessor's pixel_values of an already resized RGB8 image [H, W, 3]:
    rescale, normalize, repeat the frame `temporal` times, then its reshape / transpose into rows."""
    x = (img.astype(np.float64) / 255.0 - mean) / std           # [H, W, C]
    x = np.transpose(x, (2, 0, 1))[None]                        # [1, C, H, W]
    x = np.repeat(x, temporal, axis=0)                          # [T, C, H, W]
    c, h, w = x.shape[1:]
    gh, gw = h // patch, w // patch
    x = x.reshape(1, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gh * gw, c * temporal * patch * patch), (1, gh, gw)


def rotate_half(x):
    d = x.shape[-1] // 2
    return np.concatenate([-x[..., d:], x[..., :d]], axis=-1)


def gelu(x, tanh=False):
    if tanh:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


class RefVL:
    def __init__(self, path):
        self.cfg, t = read_model_folder(path)
        self.w = {}
        for n, v in t.items():  # accept the nested names of newer checkpoints too
            n = n.replace("model.language_model.", "model.").replace("model.visual.", "visual.")
            self.w[n] = v
        self.vc = self.cfg["vision_config"]

    # ---- vision tower -------------------------------------------------------------------------
    def rot_pos_ids(self, gh, gw, breaks):
        m = self.vc["spatial_merge_size"]
        hpos = np.broadcast_to(np.arange(gh)[:, None], (gh, gw))
        wpos = np.broadcast_to(np.arange(gw)[None, :], (gh, gw))
        hpos = hpos.reshape(gh // m, m, gw // m, m).transpose(0, 2, 1, 3).reshape(-1)
        wpos = wpos.reshape(gh // m, m, gw // m, m).transpose(0, 2, 1, 3).reshape(-1)
        if "rope2d_swap" in breaks:
            hpos, wpos = wpos, hpos
        return np.stack([hpos, wpos], axis=-1)

    def window_index(self, gh, gw, breaks):
        m, ps = self.vc["spatial_merge_size"], self.vc["patch_size"]
        vw = self.vc["window_size"] // m // ps
        if "window_2x" in breaks:
            vw *= 2
        lh, lw = gh // m, gw // m
        index = np.arange(lh * lw).reshape(lh, lw)
        pad_h, pad_w = vw - lh % vw, vw - lw % vw
        nh, nw = (lh + pad_h) // vw, (lw + pad_w) // vw
        padded = np.full((lh + pad_h, lw + pad_w), -100)
        padded[:lh, :lw] = index
        padded = padded.reshape(nh, vw, nw, vw).transpose(0, 2, 1, 3).reshape(nh * nw, vw, vw)
        seqlens = (padded != -100).sum(axis=(1, 2))
        flat = padded.reshape(-1)
        win_index = flat[flat != -100]
        cu = np.concatenate([[0], np.cumsum(seqlens) * m * m])
        cu = np.unique(cu)  # unique_consecutive of a non-decreasing list
        return win_index, cu

    def vision(self, pixels, gh, gw, breaks=()):
        vc, w = self.vc, self.w
        d, nh = vc["hidden_size"], vc["num_heads"]
        hd = d // nh
        m2 = vc["spatial_merge_size"] ** 2
        k = w["visual.patch_embed.proj.weight"].reshape(d, -1)
        x = pixels @ k.T                                           # Conv3d, stride = kernel
        n = x.shape[0]
        # 2-D RoPE: dim head_dim/2, inv_freq over it; freqs = [row * inv, col * inv]
        rd = hd // 2
        inv = 1.0 / 10000.0 ** (np.arange(0, rd, 2, dtype=np.float64) / rd)
        ids = self.rot_pos_ids(gh, gw, breaks)
        freqs = np.concatenate([np.outer(ids[:, 0], inv), np.outer(ids[:, 1], inv)], axis=-1)
        win, cu_win = self.window_index(gh, gw, breaks)
        x = x.reshape(n // m2, m2, d)[win].reshape(n, d)
        freqs = freqs.reshape(n // m2, m2, -1)[win].reshape(n, -1)
        emb = np.concatenate([freqs, freqs], axis=-1)
        cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
        cu_full = np.array([0, n])
        for i in range(vc["depth"]):
            p = f"visual.blocks.{i}."
            full = i in vc["fullatt_block_indexes"] or "full_attention" in breaks
            cu = cu_full if full else cu_win
            h = rms_norm(x, w[p + "norm1.weight"], 1e-6)
            qkv = (h @ w[p + "attn.qkv.weight"].T + w[p + "attn.qkv.bias"]).reshape(n, 3, nh, hd)
            q, kk, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
            q = q * cos + rotate_half(q) * sin
            kk = kk * cos + rotate_half(kk) * sin
            out = np.zeros((n, nh, hd))
            for a, b in zip(cu[:-1], cu[1:]):
                s = np.einsum("qhd,khd->hqk", q[a:b], kk[a:b]) / math.sqrt(hd)
                s = np.exp(s - s.max(axis=-1, keepdims=True))
                s /= s.sum(axis=-1, keepdims=True)
                out[a:b] = np.einsum("hqk,khd->qhd", s, v[a:b])
            x = x + out.reshape(n, d) @ w[p + "attn.proj.weight"].T + w[p + "attn.proj.bias"]
            h = rms_norm(x, w[p + "norm2.weight"], 1e-6)
            g = h @ w[p + "mlp.gate_proj.weight"].T + w[p + "mlp.gate_proj.bias"]
            u = h @ w[p + "mlp.up_proj.weight"].T + w[p + "mlp.up_proj.bias"]
            x = x + (silu(g) * u) @ w[p + "mlp.down_proj.weight"].T + w[p + "mlp.down_proj.bias"]
        h = rms_norm(x, w["visual.merger.ln_q.weight"], 1e-6).reshape(-1, d * m2)
        h = gelu(h @ w["visual.merger.mlp.0.weight"].T + w["visual.merger.mlp.0.bias"],
                 tanh="merge_gelu_tanh" in breaks)
        h = h @ w["visual.merger.mlp.2.weight"].T + w["visual.merger.mlp.2.bias"]
        return h[np.argsort(win)]

    # ---- language model -----------------------------------------------------------------------
    def rope_index(self, ids, grids, breaks=()):
        """get_rope_index for still images: positions [3, n] and the decode delta."""
        n = len(ids)
        if "mrope_1d" in breaks:
            return np.tile(np.arange(n), (3, 1)), 0
        m = self.vc["spatial_merge_size"]
        img_tok, start_tok = self.cfg["image_token_id"], self.cfg["vision_start_token_id"]
        ids = list(ids)
        n_images = sum(1 for i in range(n - 1) if ids[i] == start_tok and ids[i + 1] == img_tok)
        parts, st = [], 0
        for k in range(n_images):
            ed = ids.index(img_tok, st)
            _, gh, gw = grids[k]
            lh, lw = gh // m, gw // m
            st_idx = parts[-1].max() + 1 if parts else 0
            text_len = ed - st
            parts.append(np.tile(np.arange(text_len), (3, 1)) + st_idx)
            t_index = np.zeros(lh * lw, dtype=np.int64)
            h_index = np.repeat(np.arange(lh), lw)
            w_index = np.tile(np.arange(lw), lh)
            parts.append(np.stack([t_index, h_index, w_index]) + text_len + st_idx)
            st = ed + lh * lw
        if st < n:
            st_idx = parts[-1].max() + 1 if parts else 0
            parts.append(np.tile(np.arange(n - st), (3, 1)) + st_idx)
        pos = np.concatenate(parts, axis=1)
        return pos, int(pos.max() + 1 - n)

    def logits(self, ids, prompt_len, image_embeds, grids, breaks=()):
        """Logits of every row of `ids` (prompt then generated tokens), causal, one pass. Rows past
        the prompt sit at index + delta, as Qwen2_5_VLModel.forward places decode steps."""
        c, w = self.cfg, self.w
        H, nq, nkv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        hd = H // nq
        pos, delta = self.rope_index(ids[:prompt_len], grids, breaks)
        extra = np.arange(prompt_len, len(ids)) + delta
        pos = np.concatenate([pos, np.tile(extra, (3, 1))], axis=1)
        x = w["model.embed_tokens.weight"][np.array(ids)].copy()
        img_rows = [i for i in range(prompt_len) if ids[i] == c["image_token_id"]]
        x[img_rows] = np.concatenate(image_embeds, axis=0)
        inv = 1.0 / float(c["rope_theta"]) ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
        sec = list(c["rope_scaling"]["mrope_section"])
        freqs = pos[:, :, None] * inv[None, None, :]             # [3, n, hd/2]
        emb = np.concatenate([freqs, freqs], axis=-1)            # [3, n, hd]
        chunks = np.split(np.arange(hd), np.cumsum(sec * 2)[:-1])
        sel = np.concatenate([np.full(len(ch), i % 3) for i, ch in enumerate(chunks)])
        if "mrope_swap" in breaks:  # height frequencies read the width position and vice versa
            sel = np.array([{1: 2, 2: 1}.get(int(a), int(a)) for a in sel])
        ang = emb[sel, :, np.arange(hd)].T                       # [n, hd]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        n = len(ids)
        mask = np.triu(np.full((n, n), -np.inf), 1)
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = rms_norm(x, w[p + "input_layernorm.weight"], c["rms_norm_eps"])
            q = (h @ w[p + "self_attn.q_proj.weight"].T + w[p + "self_attn.q_proj.bias"]).reshape(n, nq, hd)
            k = (h @ w[p + "self_attn.k_proj.weight"].T + w[p + "self_attn.k_proj.bias"]).reshape(n, nkv, hd)
            v = (h @ w[p + "self_attn.v_proj.weight"].T + w[p + "self_attn.v_proj.bias"]).reshape(n, nkv, hd)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            rep = nq // nkv
            k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
            s = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            o = np.einsum("hqk,khd->qhd", s, v).reshape(n, nq * hd)
            x = x + o @ w[p + "self_attn.o_proj.weight"].T
            h = rms_norm(x, w[p + "post_attention_layernorm.weight"], c["rms_norm_eps"])
            x = x + (silu(h @ w[p + "mlp.gate_proj.weight"].T) * (h @ w[p + "mlp.up_proj.weight"].T)) \
                @ w[p + "mlp.down_proj.weight"].T
        x = rms_norm(x, w["model.norm.weight"], c["rms_norm_eps"])
        head = w["model.embed_tokens.weight"] if c.get("tie_word_embeddings") else w["lm_head.weight"]
        return x @ head.T, pos
