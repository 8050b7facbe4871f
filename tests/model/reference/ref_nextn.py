"""DeepSeek-V3's multi-token-prediction (NEXTN / MTP) layer in the float64 NumPy reference.

Written from the definition (DeepSeek-V3 paper, section 2.2, and the checkpoint's layout: the MTP
module is stored as layer num_hidden_layers with embed_tokens, enorm, hnorm, eh_proj, a decoder
layer and shared_head.{norm,head}; the concatenation puts the embedding first, as the released
weights expect), not from dpserve's C++:

  for position i with the target's last hidden state h_i (before model.norm) and the next token
  t_{i+1}:  x_i = eh_proj([enorm(embed(t_{i+1})); hnorm(h_i)]),
  then the decoder layer over x (causal MLA over the MTP layer's own earlier rows, at position i+1),
  then shared_head.head(shared_head.norm(.)) -> logits predicting t_{i+2}.
A chain of drafts feeds the layer's own output hidden state (before shared_head.norm) back as the
next h, with the token it drafted.
"""
import numpy as np

import ref_deepseek as ds

# Deliberate bugs: each must fail the comparison with dpserve's NEXTN logits.
BREAKS = {
    "nextn_concat_swapped": "hnorm(h) first in the concatenation, as the paper's figure draws it",
    "nextn_hidden_after_norm": "the target's hidden state taken after model.norm",
    "nextn_main_norm": "model.norm instead of shared_head.norm before the head",
}


def decoder_layer(model, layer, x, positions, breaks=(), margins=None):
    """One DeepSeek decoder layer (MLA, then MoE or dense MLP as layer index `layer` says) over rows
    x [T, hidden] at `positions`, causal over those rows. `margins` [T] (if given) receives each
    row's router margin (ref_deepseek.gate)."""
    rms, w, eps = ds_rms(model), model.w, model.eps
    p = f"model.layers.{layer}."
    inv_freq, mag = ds.rope_frequencies(model.config, model.config["qk_rope_head_dim"])
    h = rms(x, w[p + "input_layernorm.weight"], eps)
    x = x + ds.Mla(model.config, w, p, rms, eps).forward(h, positions, inv_freq, mag)
    h = rms(x, w[p + "post_attention_layernorm.weight"], eps)
    if model.is_sparse(layer):
        return x + model._deepseek_moe(p, h, (), lambda v: v, np.full(len(x), np.inf) if margins is None else margins)
    return x + model._mlp(p + "mlp.", h, lambda v: v)


def ds_rms(model):
    def rms(x, wt, eps, breaks=()):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * wt
    return rms


def nextn_rows(model, hs, toks, pos0=1, breaks=(), margins=None):
    """The MTP layer over pairs (hs[i], toks[i]) at positions pos0 + i: (logits [n, vocab], output
    hidden states [n, hidden] before shared_head.norm)."""
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
    return rms(x, norm, eps) @ w[p + "shared_head.head.weight"].T, x


def nextn_forward(model, tokens, draft=0, pos0=1, breaks=(), routing=None):
    """For tokens t[0..T): (logits [T-1 + max(draft-1, 0), vocab], drafts). Rows 0..T-2 are the MTP
    layer's logits for the pairs (h_i, t_{i+1}); with draft = K the chain then drafts K tokens
    greedily, each further row's logits appended. `pos0` is the position of the first pair (1 by the
    definition; attention depends only on position differences, so any offset gives the same).
    If `routing` is a list, the MTP layer's router margin of every row (pairs, then chain) is
    appended to it (infinite for a dense layer)."""
    for b in breaks:
        if b not in BREAKS:
            raise ValueError(f"unknown break {b}")
    if len(tokens) < 2:
        raise ValueError("need at least two tokens")
    hidden = []
    model.forward(list(tokens), hidden=hidden)
    h = hidden[1 if "nextn_hidden_after_norm" in breaks else 0]
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
        toks.append(drafts[-1])
        logits, out = nextn_rows(model, hs, toks, pos0, breaks, margins[:len(toks)])
        rows.append(logits[-1:])
    if routing is not None:
        routing.extend(margins.tolist())
    return np.concatenate(rows, axis=0), drafts
