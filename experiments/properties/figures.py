"""The figures of the properties report, drawn from the measurement dicts of :mod:`.claims` (Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["DPI", "encoding_heatmap", "encoding_waves", "offset_maps", "similarity", "uniqueness"]

DPI = 110


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _pair_labels(dim: int, layout: str) -> list[str]:
    """Per dimension: ``sin i`` / ``cos i``, in the given layout."""
    n = dim // 2
    if layout == "interleaved":
        return [f"{'cos' if d % 2 else 'sin'} {d // 2}" for d in range(dim)]
    return [f"{'cos' if d >= n else 'sin'} {d % n}" for d in range(dim)]


def encoding_heatmap(tables: dict[str, np.ndarray], path: Path) -> Path:
    """The table ``[positions, dim]`` as an image, one panel per layout, every dimension labelled.

    Args:
      tables: layout name -> ``[positions, dim]`` encoding.
      path: the PNG to write.
    """
    fig, axes = plt.subplots(1, len(tables), figsize=(6.2 * len(tables), 5.6), constrained_layout=True)
    for ax, (layout, table) in zip(np.atleast_1d(axes), tables.items(), strict=True):
        length, dim = table.shape
        image = ax.imshow(table, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_xticks(range(dim))
        ax.set_xticklabels(
            [f"{d}  {label}" for d, label in enumerate(_pair_labels(dim, layout))], rotation=90, fontsize=8
        )
        ax.set_xlabel("dimension  (function, pair i)")
        ax.set_ylabel("position pos")
        where = "dims 2i (sin), 2i+1 (cos)" if layout == "interleaved" else f"dims i (sin), i+{dim // 2} (cos)"
        ax.set_title(f'layout="{layout}": pair i on {where}', fontsize=10)
        for boundary in np.arange(-0.5, dim, 2 if layout == "interleaved" else dim // 2)[1:]:
            ax.axvline(boundary, color="k", lw=0.6, alpha=0.5)
    fig.colorbar(image, ax=axes, shrink=0.8, label="PE(pos, dim)")
    fig.suptitle(
        f"Sinusoidal encoding, d = {dim}: PE(pos, 2i) = sin(pos·w_i), PE(pos, 2i+1) = cos(pos·w_i), "
        "w_i = 10000^(-2i/d)",
        fontsize=11,
    )
    return _save(fig, path)


def encoding_waves(
    positions: np.ndarray,
    table: np.ndarray,
    fine_positions: np.ndarray,
    fine_table: np.ndarray,
    frequencies: np.ndarray,
    pairs: list[int],
    path: Path,
) -> Path:
    """A few sine columns ``2i`` of the interleaved table against position: integer samples on the wave.

    Args:
      positions: ``[L]`` integer positions.
      table: ``[L, dim]`` interleaved encoding of ``positions``.
      fine_positions: ``[M]`` fractional positions over the same range (the continuous wave).
      fine_table: ``[M, dim]`` their encoding.
      frequencies: ``[dim // 2]`` the ``w_i``.
      pairs: the pair indices ``i`` whose sine column is drawn.
      path: the PNG to write.
    """
    fig, ax = plt.subplots(figsize=(9, 3.8), constrained_layout=True)
    for i in pairs:
        wavelength = 2 * math.pi / frequencies[i]
        (line,) = ax.plot(fine_positions, fine_table[:, 2 * i], "-", lw=0.7, alpha=0.6)
        ax.plot(
            positions,
            table[:, 2 * i],
            ".",
            ms=3.5,
            color=line.get_color(),
            label=f"dim {2 * i} = sin(pos·w_{i}),  w_{i} = {frequencies[i]:.3g},  wavelength {wavelength:.1f}",
        )
    ax.set_xlabel("position pos")
    ax.set_ylabel("PE(pos, 2i)")
    ax.set_ylim(-1.15, 1.6)
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    dim, last = 2 * len(frequencies), len(frequencies) - 1
    shortest, longest = 2 * math.pi / frequencies[0], 2 * math.pi / frequencies[last]
    ax.set_title(
        f"Pair i is a wave of wavelength 2π·10000^(2i/d); for d = {dim} from {shortest:.2f} (i = 0) "
        f"to {longest:.0f} (i = {last})",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    return _save(fig, path)


def offset_maps(measured: dict[str, Any], path: Path) -> Path:
    """Three panels: the fitted full ``M_k``, the fitted block angles against ``k w_i``, the residuals.

    Args:
      measured: the dict of :func:`experiments.properties.claims.offset_maps`.
      path: the PNG to write.
    """
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.9), constrained_layout=True)
    dim, k_image = measured["dim"], measured["image_offset"]
    matrix = np.asarray(measured["wide_full_fit"]["matrix"])
    limit = np.abs(matrix).max()
    image = axes[0].imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    axes[0].set_title(
        f"Full least-squares M_k, d = {dim}, k = {k_image}\n(fitted freely: off-block entries ≈ 0)", fontsize=10
    )
    axes[0].set_xlabel("input dimension (PE(pos))")
    axes[0].set_ylabel("output dimension (PE(pos + k))")
    fig.colorbar(image, ax=axes[0], shrink=0.8)

    frequencies = np.asarray(measured["frequencies"])
    pairs = np.arange(len(frequencies))
    for entry, color in zip(
        measured["offsets"], plt.cm.viridis(np.linspace(0, 0.9, len(measured["offsets"]))), strict=True
    ):
        k, blocks = entry["offset"], np.asarray(entry["blocks"])
        fitted = np.arctan2(blocks[:, 0, 1], blocks[:, 0, 0])
        exact = np.angle(np.exp(1j * k * frequencies))  # k w_i wrapped to (-π, π]
        axes[1].plot(pairs, exact, ".", color=color, ms=4)
        axes[1].plot(pairs, fitted, "o", mfc="none", color=color, ms=6, label=f"k = {k}")
        axes[2].semilogy(pairs, entry["residual_per_pair"], "o-", color=color, ms=3, lw=0.8, label=f"k = {k}")
        axes[2].semilogy(
            pairs, np.maximum(entry["block_error_per_pair"], 1e-13), "x:", color=color, ms=4, lw=0.6
        )
    axes[1].set_title("Angle of each fitted 2x2 block (o) vs k·w_i (dot)", fontsize=10)
    axes[1].set_xlabel("pair i")
    axes[1].set_ylabel("rotation angle, wrapped to (-π, π]")
    axes[1].legend(fontsize=8)
    axes[2].axhline(2.0**-23, color="k", ls="--", lw=0.8, label="float32 epsilon 2^-23")
    axes[2].set_title(
        "Per pair: max |residual| of the fit (o)\nand max |fitted block - rotation(k·w_i)| (x)", fontsize=10
    )
    axes[2].set_xlabel("pair i")
    axes[2].legend(fontsize=8, ncol=2)
    fig.suptitle(
        "PE(pos + k) = M_k PE(pos): M_k is block-diagonal, one rotation by k·w_i per pair, "
        "the same at every position",
        fontsize=11,
    )
    return _save(fig, path)


def similarity(measured: dict[str, Any], path: Path) -> Path:
    """The similarity matrix as an image and the dot product of every pair against ``q - p``.

    Args:
      measured: the dict of :func:`experiments.properties.claims.similarity`.
      path: the PNG to write.
    """
    fig, axes = plt.subplots(
        1, 2, figsize=(13, 5), constrained_layout=True, gridspec_kw={"width_ratios": [1, 1.5]}
    )
    matrix, dim, length = measured["matrix"], measured["dim"], measured["length"]
    image = axes[0].imshow(matrix, cmap="viridis", interpolation="nearest")
    axes[0].set_title(f"PE(p) · PE(q), d = {dim}, p, q = 0 … {length - 1}", fontsize=10)
    axes[0].set_xlabel("position q")
    axes[0].set_ylabel("position p")
    fig.colorbar(image, ax=axes[0], shrink=0.8)

    profile = measured["profile"]
    p, q = np.meshgrid(np.arange(length), np.arange(length), indexing="ij")
    axes[1].plot(
        (q - p).ravel(),
        matrix.ravel(),
        ".",
        ms=1.5,
        color="tab:blue",
        alpha=0.25,
        rasterized=True,
        label=f"all {length * length} pairs (p, q), library float32",
    )
    axes[1].plot(
        profile["distance"],
        profile["formula"],
        "-",
        color="tab:red",
        lw=0.8,
        label="Σ_i cos((q - p)·w_i), float64 formula",
    )
    axes[1].set_xlabel("distance q - p")
    axes[1].set_ylabel("PE(p) · PE(q)")
    axes[1].set_title(
        "Every pair at the same distance has the same dot product (symmetric in ±distance)", fontsize=10
    )
    axes[1].legend(fontsize=8, loc="upper right", markerscale=6)
    axes[1].grid(alpha=0.3)
    return _save(fig, path)


def uniqueness(measured: dict[str, Any], path: Path) -> Path:
    """Smallest distance between two different positions' encodings against length, per width.

    Args:
      measured: the dict of :func:`experiments.properties.claims.uniqueness`.
      path: the PNG to write.
    """
    fig, ax = plt.subplots(figsize=(9.5, 5.2), constrained_layout=True)
    lengths = measured["lengths"]
    colors = plt.cm.plasma(np.linspace(0, 0.85, len(measured["per_dim"])))
    for entry, color in zip(measured["per_dim"], colors, strict=True):
        ax.plot(lengths, entry["min_distance"], "o-", color=color, ms=4, label=f"d = {entry['dim']}")
        ax.axhline(entry["bfloat16_threshold"], color=color, ls=":", lw=0.8)
    f32 = [entry["float32_threshold"] for entry in measured["per_dim"]]
    ax.axhspan(min(f32), max(f32), color="0.6", alpha=0.4, label="float32: 2u·sqrt(d/2), all d shown")
    ax.plot([], [], "k:", lw=0.8, label="bfloat16: 2u·sqrt(d/2) (dotted, per d)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("length L (positions 0 … L-1)")
    ax.set_ylabel("min over p ≠ q < L of ‖PE(p) - PE(q)‖")
    ax.set_title(
        "Closest two positions' encodings vs rounding: below the dotted line of its d, bfloat16 "
        "rounding may merge them",
        fontsize=10,
    )
    ax.legend(fontsize=8, ncol=2, loc="lower left")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)
