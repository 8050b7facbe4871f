"""The multi-token-prediction (NEXTN / MTP) layer of DeepSeek-V3 and GLM-4.5 in the float64 NumPy reference.

Written from the definition (DeepSeek-V3 paper, section 2.2, and the checkpoints' layout: the MTP
module is stored as layer num_hidden_layers with embed_tokens, enorm, hnorm, eh_proj, a decoder
layer and shared_head.{norm,head}; the concatenation puts the embedding first, as the released
weights expect) and from how the engines that serve those weights feed it (SGLang's
deepseek_nextn / glm4_moe_nextn, vLLM's deepseek_mtp / glm4_moe_mtp, llama.cpp's deepseek2 MTP
graph: each hands the MTP layer the target's hidden state after the final norm, and chains with the
layer's own output after shared_head.norm), not from dpserve's C++:

  for position i with the target's last hidden state h_i (after model.norm) and the next token
  t_{i+1}:  x_i = eh_proj([enorm(embed(t_{i+1})); hnorm(h_i)]),
  then the decoder layer over x (causal attention over the MTP layer's own earlier rows, at position
  i+1; DeepSeek's MLA, GLM-4.5's Llama-shaped attention), then
  shared_head.head(shared_head.norm(.)) -> logits predicting t_{i+2}.
A chain of drafts feeds the layer's own output hidden state (after shared_head.norm) back as the
next h, with the token it drafted. A checkpoint without the layer's own embedding or head uses the
main model's.
"""
import numpy as np

import ref_deepseek as ds
import ref_forward as rf

# Deliberate bugs: each must fail the comparison with dpserve's NEXTN logits.
BREAKS = {
    "nextn_concat_swapped": "hnorm(h) first in the concatenation, as the paper's figure draws it",
    "nextn_hidden_before_norm": "the target's hidden state taken before model.norm",
    "nextn_chain_before_norm": "the chain fed the layer's own output before shared_head.norm",
    "nextn_main_norm": "model.norm instead of shared_head.norm before the head",
}


def decoder_layer(model, layer, x, positions, breaks=(), margins=None):
    """One decoder layer of the model's family over rows x [T, hidden] at `positions`, causal over
    those rows: DeepSeek's (MLA, then MoE or dense MLP as layer index `layer` says) or GLM-4.5's
    (glm4_decoder_layer). `margins` [T] (if given) receives each row's router margin
    (ref_deepseek.gate)."""
    if model.arch == "glm4_moe":
        return glm4_decoder_layer(model, layer, x, positions, margins)
    rms, w, eps = ds_rms(model), model.w, model.eps
    p = f"model.layers.{layer}."
    inv_freq, mag = ds.rope_frequencies(model.config, model.config["qk_rope_head_dim"])
    h = rms(x, w[p + "input_layernorm.weight"], eps)
    x = x + ds.Mla(model.config, w, p, rms, eps).forward(h, positions, inv_freq, mag)
    h = rms(x, w[p + "post_attention_layernorm.weight"], eps)
    if model.is_sparse(layer):
        return x + model._deepseek_moe(p, h, (), lambda v: v, np.full(len(x), np.inf) if margins is None else margins)
    return x + model._mlp(p + "mlp.", h, lambda v: v)


def glm4_decoder_layer(model, layer, x, positions, margins=None):
    """modeling_glm4_moe's Glm4MoeDecoderLayer: input_layernorm; q / k / v projections (with biases when
    attention_bias), per-head q_norm / k_norm when use_qk_norm, rotate-half RoPE on the first
    int(head_dim * partial_rotary_factor) dims of each head, causal softmax(q k^T / sqrt(head_dim)) v
    over grouped kv heads, o_proj; post_attention_layernorm; Glm4MoeMoE (the V3 router, routed and
    shared experts) from first_k_dense_replace on, else the dense MLP. Residuals around both."""
    c, w, eps = model.config, model.w, model.eps
    p = f"model.layers.{layer}."
    T, nh, nkv, hd = len(x), model.n_heads, model.n_kv, model.head_dim
    h = rf.rms_norm(x, w[p + "input_layernorm.weight"], eps)
    q, k, v = (h @ w[p + f"self_attn.{n}_proj.weight"].T for n in "qkv")
    if c.get("attention_bias", False):
        q, k, v = (t + w[p + f"self_attn.{n}_proj.bias"] for t, n in zip((q, k, v), "qkv"))
    q, k, v = q.reshape(T, nh, hd), k.reshape(T, nkv, hd), v.reshape(T, nkv, hd)
    if c.get("use_qk_norm", False):
        q = rf.rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
        k = rf.rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
    rot = int(hd * float(c.get("partial_rotary_factor", 0.5)))
    inv_freq = rf.rope_inv_freq(c, rot)
    mag = rf.rope_attention_scaling(c)
    q = rf.apply_partial_rope(q, positions, inv_freq, rot, (), mag)
    k = rf.apply_partial_rope(k, positions, inv_freq, rot, (), mag)
    causal = np.tril(np.ones((T, T), dtype=bool))
    attn = np.empty((T, nh, hd))
    for hh in range(nh):
        kv = hh // (nh // nkv)
        s = np.where(causal, (q[:, hh, :] @ k[:, kv, :].T) / np.sqrt(hd), -np.inf)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        attn[:, hh, :] = (e / e.sum(axis=1, keepdims=True)) @ v[:, kv, :]
    x = x + attn.reshape(T, -1) @ w[p + "self_attn.o_proj.weight"].T
    h = rf.rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
    if model.is_sparse(layer):
        m = np.full(T, np.inf) if margins is None else margins
        return x + model._deepseek_moe(p, h, (), lambda v: v, m, model.router_config)
    return x + model._mlp(p + "mlp.", h, lambda v: v)


def ds_rms(model):
    def rms(x, wt, eps, breaks=()):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * wt
    return rms


def nextn_rows(model, hs, toks, pos0=1, breaks=(), margins=None):
    """The MTP layer over pairs (hs[i], toks[i]) at positions pos0 + i: (logits [n, vocab], output
    hidden states [n, hidden] after shared_head.norm, what a chain feeds back)."""
    c, w, eps = model.config, model.w, model.eps
    rms = ds_rms(model)
    N = c["num_hidden_layers"]
    p = f"model.layers.{N}."
    emb = w[p + "embed_tokens.weight"] if p + "embed_tokens.weight" in w else w["model.embed_tokens.weight"]
    e = rms(emb[np.asarray(toks)], w[p + "enorm.weight"], eps)
    hh = rms(np.asarray(hs), w[p + "hnorm.weight"], eps)
    cat = np.concatenate([hh, e] if "nextn_concat_swapped" in breaks else [e, hh], axis=1)
    x = cat @ w[p + "eh_proj.weight"].T
    x = decoder_layer(model, N, x, pos0 + np.arange(len(x)), breaks, margins)
    norm = w["model.norm.weight"] if "nextn_main_norm" in breaks else w[p + "shared_head.norm.weight"]
    head = w[p + "shared_head.head.weight"] if p + "shared_head.head.weight" in w else model.lm_head()
    out = rms(x, norm, eps)
    return out @ head.T, (x if "nextn_chain_before_norm" in breaks else out)


def nextn_forward(model, tokens, draft=0, pos0=1, breaks=(), routing=None, follow=None):
    """For tokens t[0..T): (logits [T-1 + max(draft-1, 0), vocab], drafts). Rows 0..T-2 are the MTP
    layer's logits for the pairs (h_i, t_{i+1}); with draft = K the chain then drafts K tokens
    greedily, each further row's logits appended. `pos0` is the position of the first pair (1 by the
    definition; attention depends only on position differences, so any offset gives the same).
    If `routing` is a list, the MTP layer's router margin of every row (pairs, then chain) is
    appended to it (infinite for a dense layer). If `follow` (K tokens) is given, the chain feeds
    those tokens on instead of its own argmax (to score another implementation's chain row by row
    where a near-tie made it draft otherwise); the drafts returned are still the argmaxes."""
    for b in breaks:
        if b not in BREAKS:
            raise ValueError(f"unknown break {b}")
    if len(tokens) < 2:
        raise ValueError("need at least two tokens")
    hidden = []
    model.forward(list(tokens), hidden=hidden)
    h = hidden[0 if "nextn_hidden_before_norm" in breaks else 1]
    hs, toks = list(h[:-1]), list(tokens[1:])
    margins = np.full(len(toks) + max(draft - 1, 0), np.inf)
    logits, out = nextn_rows(model, hs, toks, pos0, breaks, margins[:len(toks)])
    rows, drafts = [logits], []
    for j in range(draft):
        last = rows[-1][-1]
        drafts.append(int(np.argmax(last)))
        if j == draft - 1:
            break
        # The whole chain again with one more pair: the cache's earlier rows are the same rows.
        hs.append(out[-1])
        toks.append(drafts[-1] if follow is None else int(follow[j]))
        logits, out = nextn_rows(model, hs, toks, pos0, breaks, margins[:len(toks)])
        rows.append(logits[-1:])
    if routing is not None:
        routing.extend(margins.tolist())
    return np.concatenate(rows, axis=0), drafts
