"""Porting Hugging Face, Llama and Gemma weights: which rotary layout, which frequencies.

**Layout.** Hugging Face's Llama, Mistral, Qwen, Gemma (and GPT-NeoX, MaxText) rotate feature ``i`` of each
head with feature ``i + head_dim/2`` (``rotate_half``): that is ``layout="split"``. Meta's original LLaMA
code, GPT-J and RoFormer rotate ``(2i, 2i + 1)``: ``layout="interleaved"``. Hugging Face's conversion script
permutes the query and key projections of Meta's checkpoints so that they run with ``rotate_half``;
:func:`posenc_jax.rotary_interleaved_to_split` is that permutation, so a checkpoint in either format runs
with either layout. A checkpoint with the wrong layout is scored wrongly without any error, which is why
the rotary functions have no default layout.

**Frequencies.** ``w_i = rope_theta ** (-2i / head_dim)`` (``inv_freq`` in Hugging Face), then the
checkpoint's ``rope_scaling``: Llama 3.1 / 3.2 / 3.3 use ``rope_type="llama3"`` (``pe.rope.Llama3(factor=8,
low_freq_factor=1, high_freq_factor=4, original_max_position=8192)`` with ``base=500_000``); Llama 2 uses
none (``base=10_000``); Gemma uses none (``base=10_000``) and Gemma 3's global layers ``base=1_000_000``
with ``pe.rope.Linear(8.0)`` (see ``gemma3_local_global.py``). :func:`posenc_jax.rope_frequencies` returns
them in float64 on the host, and :class:`posenc_jax.schemes.Rotary` applies them with the same rule.

This file transcribes Hugging Face's formulas in numpy (``inv_freq``, the Llama 3 rule, ``rotate_half``,
the conversion script's ``permute``) and checks the library against them.

    python -m examples.recipes.port_hf_weights
"""

from __future__ import annotations

import math

import numpy as np

import posenc_jax as pe
from posenc_jax import schemes

# The rope settings of a Llama 3.1 config.json ("rope_theta" and "rope_scaling"), by their Hugging Face names.
LLAMA_31 = {
    "rope_theta": 500_000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}


def hf_inv_freq(head_dim: int, rope_theta: float) -> np.ndarray:
    """``1.0 / (base ** (torch.arange(0, dim, 2) / dim))`` of ``_compute_default_rope_parameters``."""
    return 1.0 / rope_theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)


def hf_llama3_inv_freq(head_dim: int, config: dict) -> np.ndarray:
    """``_compute_llama3_parameters`` of transformers, line by line."""
    inv_freq = hf_inv_freq(head_dim, config["rope_theta"])
    factor, old_context_len = config["factor"], config["original_max_position_embeddings"]
    low_freq_factor, high_freq_factor = config["low_freq_factor"], config["high_freq_factor"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def hf_apply_rotary_pos_emb(x: np.ndarray, positions: np.ndarray, inv_freq: np.ndarray) -> np.ndarray:
    """``x * cos + rotate_half(x) * sin`` of ``apply_rotary_pos_emb``, in float64.

    ``x``: ``[batch, length, heads, head_dim]`` (Hugging Face's ``[batch, heads, length, head_dim]`` with the
    heads axis moved), ``positions``: ``[batch, length]``.
    """
    freqs = positions[..., None].astype(np.float64) * inv_freq  # [batch, length, head_dim / 2]
    emb = np.concatenate([freqs, freqs], axis=-1)[:, :, None, :]  # the same angle in both halves
    half = x.shape[-1] // 2
    rotate_half = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * np.cos(emb) + rotate_half * np.sin(emb)


def hf_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """``permute`` of ``convert_llama_weights_to_hf.py`` (Meta's ``[out, in]`` q/k weight to Hugging Face's)."""
    dim1, dim2 = w.shape
    return w.reshape(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(0, 2, 1, 3).reshape(dim1, dim2)


def llama31_rotary(head_dim: int) -> schemes.Rotary:
    """The rotary scheme of a Hugging Face Llama 3.1 checkpoint."""
    scaling = pe.rope.Llama3(
        LLAMA_31["factor"],
        low_freq_factor=LLAMA_31["low_freq_factor"],
        high_freq_factor=LLAMA_31["high_freq_factor"],
        original_max_position=LLAMA_31["original_max_position_embeddings"],
    )
    return schemes.Rotary(head_dim, layout="split", base=LLAMA_31["rope_theta"], scaling=scaling)


def check(head_dim: int = 16, heads: int = 2, seed: int = 0) -> dict[str, float]:
    """The largest differences between the library and the Hugging Face transcriptions (float64)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 5, heads, head_dim)).astype(np.float32)
    # positions far into a long context, where float32 angles would already be off
    positions = np.stack([np.arange(5), np.arange(5) + 100_000]).astype(np.int32)
    scheme = llama31_rotary(head_dim)
    frequencies = pe.rope_frequencies(head_dim, base=LLAMA_31["rope_theta"], scaling=scheme.scaling)
    want = hf_apply_rotary_pos_emb(x.astype(np.float64), positions, hf_llama3_inv_freq(head_dim, LLAMA_31))
    with_frequencies = pe.apply_rotary(x, positions, layout="split", frequencies=frequencies)
    rotated, _ = scheme.rotate(x, x, positions, positions)
    plain = pe.apply_rotary(x, positions, layout="split", base=10_000.0)
    # A Meta-format projection with interleaved rotary scores as its converted form with split rotary.
    w_meta = rng.standard_normal((heads * head_dim, 12)).astype(np.float32)  # [out, in] as in torch
    tokens = rng.standard_normal((1, 5, 12)).astype(np.float32)
    q_meta = (tokens @ w_meta.T).reshape(1, 5, heads, head_dim)
    q_hf = (tokens @ hf_permute(w_meta, heads).T).reshape(1, 5, heads, head_dim)
    w_converted = np.asarray(pe.rotary_interleaved_to_split(w_meta, head_dim=head_dim, axis=0))
    meta = np.asarray(pe.apply_rotary(q_meta, positions[1], layout="interleaved", base=10_000.0), np.float64)
    hf = np.asarray(pe.apply_rotary(q_hf, positions[1], layout="split", base=10_000.0), np.float64)
    scores_meta = np.einsum("bqhd,bkhd->bhqk", meta, meta)  # the projection serves as queries and keys
    scores_hf = np.einsum("bqhd,bkhd->bhqk", hf, hf)
    wrong = np.asarray(pe.apply_rotary(q_meta, positions[1], layout="split", base=10_000.0), np.float64)
    scores_wrong = np.einsum("bqhd,bkhd->bhqk", wrong, wrong)
    return {
        "llama3 frequencies vs transformers' rule (relative)": float(
            np.max(np.abs(frequencies / hf_llama3_inv_freq(head_dim, LLAMA_31) - 1))
        ),
        "split with rope_frequencies (Llama 3.1) vs rotate_half": float(
            np.max(np.abs(np.asarray(with_frequencies, np.float64) - want))
        ),
        "schemes.Rotary (Llama 3.1) vs rotate_half": float(
            np.max(np.abs(np.asarray(rotated, np.float64) - want))
        ),
        "split, base 10000 (Llama 2, Gemma) vs rotate_half": float(
            np.max(
                np.abs(
                    np.asarray(plain, np.float64)
                    - hf_apply_rotary_pos_emb(x.astype(np.float64), positions, hf_inv_freq(head_dim, 10_000.0))
                )
            )
        ),
        "conversion permutation vs transformers' permute": float(
            np.max(np.abs(w_converted - hf_permute(w_meta, heads)))
        ),
        "scores: Meta weights interleaved vs converted weights split (relative)": float(
            np.max(np.abs(scores_meta - scores_hf)) / np.max(np.abs(scores_meta))
        ),
        "scores: Meta weights with the split layout, unconverted (relative; wrong)": float(
            np.max(np.abs(scores_meta - scores_wrong)) / np.max(np.abs(scores_meta))
        ),
    }


def main() -> dict[str, float]:
    """Prints the differences :func:`check` measures, and returns them."""
    results = check()
    for name, value in results.items():
        print(f"{name}: {value:.1e}")
    return results


if __name__ == "__main__":
    main()
