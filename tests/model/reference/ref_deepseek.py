"""DeepSeek-V2/V3 pieces of the float64 NumPy reference: multi-head latent attention (MLA), YaRN,
the DeepSeek RoPE ordering and the DeepSeekMoE gate.

Written from the published definitions: the DeepSeek-V2 paper (MLA, DeepSeekMoE, device-limited
routing) and DeepSeek-V3 paper (sigmoid affinities, auxiliary-loss-free bias, node-limited routing),
and the semantics of their reference modeling code (modeling_deepseek.py of DeepSeek-V2(-Lite) and
DeepSeek-V3): the facts used are listed where they are used. Not derived from dpserve's C++.
"""
import math

import numpy as np

# Deliberate bugs (see ref_forward.BREAKS): all must be caught by the comparisons.
BREAKS = {
    "mla_rope_order": "q_pe/k_pe rotated by halves in stored order, without DeepSeek's de-interleave",
    "skip_kv_a_norm": "kv_a_layernorm skipped (c_kv used unnormalised)",
    "no_mscale": "YaRN's mscale(factor, mscale_all_dim)^2 left out of the softmax scale",
    "group_limit_ignored": "group-limited routing picks the top-k over all experts, ignoring the groups",
    "group_score_max": "noaux_tc groups ranked by their best expert instead of their two best",
    "moe_scale_rule_swapped": "routed_scaling_factor applied by the other version's rule (V2 <-> V3)",
}


def yarn_mscale(factor, m):
    """YaRN's attention temperature: 0.1 * m * ln(factor) + 1 for factor > 1."""
    return 1.0 if factor <= 1 else 0.1 * m * math.log(factor) + 1.0


def rope_frequencies(config, dim, breaks=()):
    """(inverse frequencies [dim/2], cos/sin magnitude) of the rotary part.

    YaRN as DeepSeek defines it: for frequency index i (of dim/2), extrapolated 1/base^(2i/dim) and
    interpolated 1/(factor * base^(2i/dim)) are blended by a ramp over i that is 0 below
    floor(d(beta_fast)) and 1 above ceil(d(beta_slow)), d(n) = dim * ln(L / (2 pi n)) / (2 ln base)
    with L = original_max_position_embeddings (the dimension whose wavelength fits n times into L);
    high gets 0.001 added if both ends coincide. cos and sin are both multiplied by
    mscale(factor, mscale) / mscale(factor, mscale_all_dim)."""
    base = float(config.get("rope_theta", 10000.0))
    extra = 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    rs = config.get("rope_scaling")
    if not rs:
        return extra, 1.0
    kind = rs.get("type", rs.get("rope_type"))
    if kind == "linear":
        return extra / float(rs["factor"]), 1.0
    if kind != "yarn":
        raise ValueError(f"unsupported rope_scaling {kind!r} for DeepSeek")
    factor = float(rs["factor"])
    orig = float(rs.get("original_max_position_embeddings", 4096))
    fast, slow = float(rs.get("beta_fast", 32)), float(rs.get("beta_slow", 1))

    def turning_dim(rotations):
        return dim * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(turning_dim(fast)), 0)
    high = min(math.ceil(turning_dim(slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    inv = (extra / factor) * ramp + extra * (1.0 - ramp)
    mag = yarn_mscale(factor, float(rs.get("mscale", 1))) / yarn_mscale(factor, float(rs.get("mscale_all_dim", 0)))
    return inv, mag


def softmax_scale(config, breaks=()):
    """(qk_nope + qk_rope)^-1/2, times mscale(factor, mscale_all_dim)^2 when rope_scaling sets a
    non-zero mscale_all_dim."""
    scale = (config["qk_nope_head_dim"] + config["qk_rope_head_dim"]) ** -0.5
    rs = config.get("rope_scaling")
    if rs and rs.get("mscale_all_dim", 0) and "no_mscale" not in breaks:
        m = yarn_mscale(float(rs["factor"]), float(rs["mscale_all_dim"]))
        scale *= m * m
    return scale


def rope(x, positions, inv_freq, mag, breaks=()):
    """x [T, heads, d]. DeepSeek's order: the rotary part is first de-interleaved (elements 0, 2,
    4, ... then 1, 3, 5, ...), then rotated by halves: out = x*cos + rotate_half(x)*sin with
    cos/sin = cat(angles, angles)."""
    if "mla_rope_order" not in breaks:
        x = np.concatenate([x[..., 0::2], x[..., 1::2]], axis=-1)
    ang = np.outer(positions.astype(np.float64), inv_freq)
    cos, sin = (mag * np.cos(ang))[:, None, :], (mag * np.sin(ang))[:, None, :]
    if "rope_neg" in breaks:
        sin = -sin
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


class Mla:
    """One layer's MLA weights and both forms of its attention."""

    def __init__(self, config, w, prefix, rms_norm, eps):
        c = config
        self.c, self.w, self.p = c, w, prefix + "self_attn."
        self.H = c["num_attention_heads"]
        self.nope, self.rd, self.vd = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        self.r = c["kv_lora_rank"]
        self.q_lora = c.get("q_lora_rank") or 0
        self.rms_norm, self.eps = rms_norm, eps

    def query(self, h, act, breaks):
        """[T, H, nope + rope]: q_proj(h), or q_b_proj(rmsnorm(q_a_proj(h))) with q_lora_rank."""
        w, p = self.w, self.p
        if self.q_lora:
            qa = self.rms_norm(h @ w[p + "q_a_proj.weight"].T, w[p + "q_a_layernorm.weight"], self.eps, breaks)
            q = act(qa) @ w[p + "q_b_proj.weight"].T
        else:
            q = h @ w[p + "q_proj.weight"].T
        return q.reshape(len(h), self.H, self.nope + self.rd)

    def latent(self, h, breaks):
        """(c_kv [T, r] normalised by kv_a_layernorm, k_pe [T, rope] not yet rotated): the split of
        kv_a_proj_with_mqa(h), c_kv first."""
        w, p = self.w, self.p
        ckv = h @ w[p + "kv_a_proj_with_mqa.weight"].T
        c, k_pe = ckv[:, :self.r], ckv[:, self.r:]
        if "skip_kv_a_norm" not in breaks:
            c = self.rms_norm(c, w[p + "kv_a_layernorm.weight"], self.eps, breaks)
        return c, k_pe

    def forward(self, h, positions, inv_freq, mag, breaks=(), act=lambda v: v, kvq=lambda v: v):
        """Decompressed form over a whole sequence: k_nope and v of every head from kv_b_proj(c_kv),
        one shared rotated k_pe, causal softmax((q_nope.k_nope + q_pe.k_pe) * scale) v, o_proj."""
        T, H, nope, vd = len(h), self.H, self.nope, self.vd
        q = self.query(h, act, breaks)
        c, k_pe = self.latent(h, breaks)
        k_positions = positions + (1 if "rope_k_pos_plus1" in breaks else 0)
        c, k_pe = kvq(c), kvq(rope(k_pe[:, None, :], k_positions, inv_freq, mag, breaks)[:, 0, :])
        kv = (act(c) @ self.w[self.p + "kv_b_proj.weight"].T).reshape(T, H, nope + vd)
        k_nope, v = kv[..., :nope], kv[..., nope:]
        q_nope, q_pe = q[..., :nope], rope(q[..., nope:], positions, inv_freq, mag, breaks)
        scale = softmax_scale(self.c, breaks)
        causal = np.tril(np.ones((T, T), dtype=bool))
        out = np.empty((T, H, vd))
        for hh in range(H):
            s = (q_nope[:, hh] @ k_nope[:, hh].T + q_pe[:, hh] @ k_pe.T) * scale
            if "no_causal_mask" not in breaks:
                s = np.where(causal, s, -np.inf)
            s = s - s.max(axis=1, keepdims=True)
            e = np.exp(s)
            out[:, hh] = (e / e.sum(axis=1, keepdims=True)) @ v[:, hh]
        return act(out.reshape(T, H * vd)) @ self.w[self.p + "o_proj.weight"].T

    def decode_absorbed(self, h_t, pos, cache, inv_freq, mag):
        """One token in the weight-absorbed form against a cache of latent rows [c_kv | k_pe]
        (appended here): q_nope mapped into the latent space by W_UK^T, scores against c_kv, the
        attention-weighted c_kv mapped out by W_UV. Used only to check the algebra (selfcheck)."""
        H, nope, vd, r = self.H, self.nope, self.vd, self.r
        q = self.query(h_t[None, :], lambda v: v, ())[0]
        c, k_pe = self.latent(h_t[None, :], ())
        k_pe = rope(k_pe[:, None, :], np.array([pos]), inv_freq, mag)[0, 0]
        cache.append(np.concatenate([c[0], k_pe]))
        rows = np.stack(cache)                        # [n, r + rope]
        wkv = self.w[self.p + "kv_b_proj.weight"].reshape(H, nope + vd, r)
        q_pe = rope(q[None, :, nope:], np.array([pos]), inv_freq, mag)[0]
        scale = softmax_scale(self.c)
        out = np.empty((H, vd))
        for hh in range(H):
            q_lat = wkv[hh, :nope].T @ q[hh, :nope]  # [r]
            s = (rows[:, :r] @ q_lat + rows[:, r:] @ q_pe[hh]) * scale
            e = np.exp(s - s.max())
            out[hh] = wkv[hh, nope:] @ ((e / e.sum()) @ rows[:, :r])
        return out.reshape(H * vd) @ self.w[self.p + "o_proj.weight"].T


def _derivative_bound(scores, scoring):
    """Per expert, how much its score can move per unit of router-logit error: s(1 - s) for
    sigmoid; for softmax dp_i = p_i (dl_i - sum_j p_j dl_j), so at most 2 p_i."""
    return scores * (1 - scores) if scoring == "sigmoid" else 2 * scores


def gate(config, w, prefix, h, breaks=(), margins=None):
    """DeepSeekMoE routing: (expert ids [T, k], weights [T, k]).

    scores = softmax(logits) or sigmoid(logits) (scoring_func). Selection (topk_method):
      greedy: top-k of the scores;
      group_limited_greedy: experts form n_group equal groups, a group scores its best expert, the
        topk_group best groups are kept and the other experts' scores set to 0, then top-k;
      noaux_tc: like group-limited on scores + e_score_correction_bias, a group scoring the sum of
        its two best; the weights are the chosen experts' scores without the bias.
    Weights: V2 divides by their sum when k > 1 and norm_topk_prob, else multiplies by
    routed_scaling_factor; V3 divides likewise and then always multiplies.
    `margins` [T] (if given) receives, per token, the smallest gap between a kept and a dropped
    choice (expert or group), in router-logit units (gap / derivative bound): how close the token is
    to choosing differently."""
    c = config
    k = c["num_experts_per_tok"]
    E = c["n_routed_experts"]
    scoring = c.get("scoring_func", "softmax")
    logits = h @ w[prefix + "gate.weight"].T
    if scoring == "softmax":
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        scores = z / z.sum(axis=1, keepdims=True)
    else:
        scores = 1.0 / (1.0 + np.exp(-logits))
    method = c.get("topk_method", "greedy")
    choice = scores.copy()
    if method == "noaux_tc":
        choice = choice + w[prefix + "gate.e_score_correction_bias"]
    dscore = _derivative_bound(scores, scoring)
    T = len(h)
    gap = np.full(T, np.inf)
    if method in ("group_limited_greedy", "noaux_tc") and "group_limit_ignored" not in breaks:
        G, kg = c["n_group"], c["topk_group"]
        grouped = choice.reshape(T, G, E // G)
        dgrouped = dscore.reshape(T, G, E // G)
        if method == "group_limited_greedy" or "group_score_max" in breaks:
            best = np.argmax(grouped, axis=2)
            gscore = np.take_along_axis(grouped, best[..., None], axis=2)[..., 0]
            gderiv = np.take_along_axis(dgrouped, best[..., None], axis=2)[..., 0]
        else:
            two = np.argsort(-grouped, axis=2, kind="stable")[..., :2]
            gscore = np.take_along_axis(grouped, two, axis=2).sum(axis=2)
            gderiv = np.take_along_axis(dgrouped, two, axis=2).sum(axis=2)
        order = np.argsort(-gscore, axis=1, kind="stable")
        keep = np.zeros((T, G), dtype=bool)
        np.put_along_axis(keep, order[:, :kg], True, axis=1)
        if kg < G:
            a, b = order[:, kg - 1], order[:, kg]
            ga = np.take_along_axis(gscore, a[:, None], 1)[:, 0] - np.take_along_axis(gscore, b[:, None], 1)[:, 0]
            da = np.take_along_axis(gderiv, a[:, None], 1)[:, 0] + np.take_along_axis(gderiv, b[:, None], 1)[:, 0]
            gap = np.minimum(gap, ga / np.maximum(da, 1e-12))
        choice = np.where(np.repeat(keep, E // G, axis=1), choice, 0.0)
    order = np.argsort(-choice, axis=1, kind="stable")
    top = order[:, :k]
    if k < E:
        a, b = order[:, k - 1], order[:, k]
        ca, cb = np.take_along_axis(choice, a[:, None], 1)[:, 0], np.take_along_axis(choice, b[:, None], 1)[:, 0]
        da, db = np.take_along_axis(dscore, a[:, None], 1)[:, 0], np.take_along_axis(dscore, b[:, None], 1)[:, 0]
        gap = np.minimum(gap, (ca - cb) / np.maximum(da + db, 1e-12))
    if margins is not None:
        np.minimum(margins, gap, out=margins)
    wts = np.take_along_axis(scores, top, axis=1)
    normalize = k > 1 and bool(c.get("norm_topk_prob", False))
    if normalize:
        wts = wts / (wts.sum(axis=1, keepdims=True) + 1e-20)
    v3 = c["architectures"][0] in ("DeepseekV3ForCausalLM", "Glm4MoeLiteForCausalLM")
    if "moe_scale_rule_swapped" in breaks:
        v3 = not v3
    if v3 or not normalize:
        wts = wts * float(c.get("routed_scaling_factor", 1.0))
    return top, wts


def is_sparse(config, layer):
    """A layer is DeepSeekMoE when n_routed_experts is set, layer >= first_k_dense_replace and
    layer % moe_layer_freq == 0; otherwise a dense MLP of intermediate_size."""
    c = config
    return bool(c.get("n_routed_experts")) and layer >= c.get("first_k_dense_replace", 0) and \
        layer % c.get("moe_layer_freq", 1) == 0
