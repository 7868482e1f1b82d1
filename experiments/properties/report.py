"""Runs every measurement, draws the figures and writes ``numbers.json`` and ``properties.md``."""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments.properties import claims, figures, ordering
from posenc_jax import interleaved_to_split, paper_frequencies, sinusoidal

__all__ = ["PRESETS", "Settings", "run"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of the measurements (saved in ``numbers.json``).

    Attributes:
      image_dim: width of the encoding drawn as an image and of the waves.
      image_length: positions in the image.
      wave_length: positions in the waves plot.
      wave_pairs: the pairs ``i`` drawn as waves.
      worked_dim: width of the worked table.
      map_dim: width for the offset maps.
      map_offsets: the offsets ``k``.
      map_positions: positions per fit.
      similarity_dim: width for the similarity matrix.
      similarity_length: positions of the similarity matrix.
      unique_dims: widths for the uniqueness measurement.
      unique_max_log2_length: the longest length is ``2**unique_max_log2_length``.
    """

    image_dim: int = 16
    image_length: int = 64
    wave_length: int = 200
    wave_pairs: tuple[int, ...] = (0, 1, 2, 3)
    worked_dim: int = 8
    map_dim: int = 64
    map_offsets: tuple[int, ...] = (1, 10, 100, 1000, 10_000)
    map_positions: int = 4096
    similarity_dim: int = 64
    similarity_length: int = 256
    unique_dims: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128, 256)
    unique_max_log2_length: int = 16


PRESETS = {
    "default": Settings(),
    # Small sizes for a smoke run (tests); not for the committed results.
    "quick": Settings(
        image_length=32,
        wave_length=64,
        map_dim=16,
        map_offsets=(1, 100),
        map_positions=256,
        similarity_dim=16,
        similarity_length=48,
        unique_dims=(2, 16),
        unique_max_log2_length=10,
    ),
}


def _fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}g}" if abs(x) < 1e-3 or abs(x) >= 1e5 else f"{x:.{digits + 1}g}"


def _json_ready(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _json_ready(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_json_ready(v) for v in node]
    if isinstance(node, np.ndarray):
        return node.tolist()
    if isinstance(node, np.generic):
        return node.item()
    return node


def _relative(path: str | Path) -> str:
    """``path`` relative to the repository root when it lies inside it (the report is committed)."""
    root = Path(__file__).resolve().parents[2]
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def _encoding(settings: Settings, workdir: Path) -> dict[str, Any]:
    dim = settings.image_dim
    positions = np.arange(settings.image_length)
    tables = {
        layout: np.asarray(sinusoidal(positions, dim, layout=layout)) for layout in ("interleaved", "split")
    }
    figures.encoding_heatmap(tables, workdir / "encoding_heatmap.png")
    wave_positions = np.arange(settings.wave_length)
    # Fractional positions (float32) draw the continuous wave the integer positions sample.
    fine_positions = np.linspace(0, settings.wave_length - 1, 8 * settings.wave_length, dtype=np.float32)
    frequencies = paper_frequencies(dim)
    figures.encoding_waves(
        wave_positions,
        np.asarray(sinusoidal(wave_positions, dim)),
        fine_positions,
        np.asarray(sinusoidal(fine_positions, dim)),
        frequencies,
        list(settings.wave_pairs),
        workdir / "encoding_waves.png",
    )
    return {
        "dim": dim,
        "length": settings.image_length,
        "wavelengths": (2 * math.pi / frequencies).tolist(),
        # The layouts differ only by a permutation of the columns: this is exactly 0.
        "max_split_minus_permuted_interleaved": float(
            np.abs(tables["split"] - np.asarray(interleaved_to_split(tables["interleaved"]))).max()
        ),
    }


def _worked(settings: Settings) -> dict[str, Any]:
    table = claims.worked_table(settings.worked_dim)
    # The same numbers from the formula in float64, to state the library's error in the report.
    w = paper_frequencies(settings.worked_dim)
    angle = np.asarray(table["positions"], np.float64)[:, None] * w
    formula = np.empty((len(table["positions"]), settings.worked_dim))
    formula[:, 0::2], formula[:, 1::2] = np.sin(angle), np.cos(angle)
    values = np.array([row["values"] for row in table["rows"]]).T
    table["max_error_vs_float64_formula"] = float(np.abs(values - formula).max())
    return table


def run(
    workdir: str | Path,
    *,
    preset: str = "default",
    ordering_summary: str | Path | None = None,
) -> dict[str, Any]:
    """Measures every claim and writes the figures, ``numbers.json`` and ``properties.md`` to ``workdir``.

    Args:
      workdir: output directory (created if needed).
      preset: ``"default"`` (the reported sizes) or ``"quick"`` (a smoke run).
      ordering_summary: the ordering experiments' ``summary.json`` (default: the committed results).

    Returns:
      The numbers written to ``numbers.json``.

    Raises:
      ValueError: for an unknown preset.
    """
    if preset not in PRESETS:
        raise ValueError(f"run(preset={preset!r}): preset must be one of {sorted(PRESETS)}")
    settings = PRESETS[preset]
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if ordering_summary is None:
        ordering_summary = Path(__file__).resolve().parents[1] / "results" / "ordering" / "summary.json"
    start = time.perf_counter()

    numbers: dict[str, Any] = {"preset": preset, "settings": dataclasses.asdict(settings)}
    numbers["encoding"] = _encoding(settings, workdir)
    numbers["worked_table"] = _worked(settings)

    maps = claims.offset_maps(settings.map_dim, settings.map_offsets, num_positions=settings.map_positions)
    figures.offset_maps(maps, workdir / "offset_maps.png")
    numbers["offset_maps"] = {k: v for k, v in maps.items() if k != "wide_full_fit"}
    numbers["offset_maps"]["wide_full_fit"] = {k: v for k, v in maps["wide_full_fit"].items() if k != "matrix"}
    numbers["offset_maps"]["float32_epsilon"] = 2.0**-23

    sim = claims.similarity(settings.similarity_dim, settings.similarity_length)
    figures.similarity(sim, workdir / "similarity.png")
    profile = sim["profile"]
    numbers["similarity"] = {k: v for k, v in sim.items() if k not in ("matrix", "profile")}
    numbers["similarity"]["profile"] = {
        "distance": profile["distance"],
        "mean": profile["mean"],
        "spread": profile["max"] - profile["min"],
        "formula": profile["formula"],
    }

    unique = claims.uniqueness(settings.unique_dims, settings.unique_max_log2_length)
    figures.uniqueness(unique, workdir / "uniqueness.png")
    numbers["uniqueness"] = unique

    numbers["extrapolation"] = ordering.extrapolation(ordering_summary)
    numbers["extrapolation"]["path"] = _relative(ordering_summary)
    numbers["meta"] = {
        "seconds": time.perf_counter() - start,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    numbers = _json_ready(numbers)
    (workdir / "numbers.json").write_text(json.dumps(numbers, indent=1) + "\n")
    (workdir / "properties.md").write_text(markdown(numbers))
    return numbers


def markdown(numbers: dict[str, Any]) -> str:
    """The report: for each claim, its figure, its numbers and one sentence, all from ``numbers``."""
    enc, worked, maps = numbers["encoding"], numbers["worked_table"], numbers["offset_maps"]
    sim, unique, extra = numbers["similarity"], numbers["uniqueness"], numbers["extrapolation"]
    lines = [
        "# The claims about sinusoidal encodings, checked",
        "",
        "Generated by `python -m experiments.properties`; every number below is read from `numbers.json`.",
        "",
        "## 1. The encoding as an image",
        "",
        "![The table in both layouts](encoding_heatmap.png)",
        "",
        "![Columns as waves](encoding_waves.png)",
        "",
        f"d = {enc['dim']}, positions 0–{enc['length'] - 1}. Wavelengths 2π/w_i run from "
        f"{enc['wavelengths'][0]:.2f} (i = 0) to {enc['wavelengths'][-1]:.0f} (i = {enc['dim'] // 2 - 1}); "
        f"the split table equals the interleaved one with its columns permuted "
        f"(max difference {enc['max_split_minus_permuted_interleaved']:.1g}).",
        "",
        "Each pair i is one sine and one cosine wave of a single wavelength, 2π·10000^(2i/d); the layouts hold "
        "the same numbers and differ only in which columns the pair occupies.",
        "",
        "## 2. The index, worked",
        "",
        f"d = {worked['dim']}, w_i = 10000^(-2i/d). The interleaved dimension is the paper's; the split column "
        "shows where the same value sits in the split layout.",
        "",
        "| dim | split dim | i | function | w_i | wavelength 2π/w_i | "
        + " | ".join(f"pos {p}" for p in worked["positions"])
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(worked["positions"]),
    ]
    for row in worked["rows"]:
        values = " | ".join(f"{v:.6f}" for v in row["values"])
        lines.append(
            f"| {row['dimension']} | {row['split_dimension']} | {row['i']} | "
            f"{row['function']}(pos·w_{row['i']}) | {row['frequency']:.6g} | "
            f"{row['wavelength']:.6g} | {values} |"
        )
    lines += [
        "",
        f"Largest difference from the float64 formula: {worked['max_error_vs_float64_formula']:.1e}.",
        "",
        "`i` numbers the (sin, cos) pair, not the dimension: dimensions 2i and 2i + 1 share the frequency "
        "w_i = 10000^(-2i/d), so the exponent 2i/d runs over 0, 2/d, 4/d, … and never reaches 1.",
        "",
        "## 3. A fixed offset is a linear map",
        "",
        "![Fitted maps](offset_maps.png)",
        "",
        f"d = {maps['dim']}, offsets k = {', '.join(str(o['offset']) for o in maps['offsets'])}; "
        f"each (sin, cos) pair's 2x2 block fitted by least squares over {maps['num_positions']} "
        f"random positions in [0, {maps['window']}), and again {maps['far_start']} positions further on.",
        "",
        f"- largest residual of any fit: **{_fmt(maps['max_residual'])}** (float32 epsilon "
        f"{_fmt(maps['float32_epsilon'])});",
        f"- largest difference between a fitted block and the rotation by k·w_i: "
        f"{_fmt(maps['max_block_error'])};",
        f"- largest difference between blocks fitted near 0 and {maps['far_start']} positions further: "
        f"{_fmt(maps['max_far_minus_near'])};",
        f"- one free {maps['dim']}x{maps['dim']} fit over the same wide positions "
        f"(k = {maps['image_offset']}): condition number {maps['wide_full_fit']['condition_number']:.2f}, "
        "largest off-block entry "
        f"{_fmt(maps['wide_full_fit']['max_off_block'])};",
        f"- the same free fit over positions 0–{maps['narrow_full_fit']['length'] - 1}: condition number "
        f"{maps['narrow_full_fit']['condition_number']:.1e}, residual still "
        f"{_fmt(maps['narrow_full_fit']['max_residual'])}, yet entries off by up to "
        f"{maps['narrow_full_fit']['max_error_vs_rotation']:.2f} from the true map.",
        "",
        "PE(pos + k) = M_k PE(pos) holds to float32 rounding with M_k block-diagonal, one rotation by k·w_i "
        "per pair, the same at every position; a model can express an offset linearly, which is not the same "
        "as learning to use it, and one full fit over a short window cannot even identify M_k.",
        "",
        "## 4. Similarity depends on distance only",
        "",
        "![Similarity](similarity.png)",
        "",
        f"d = {sim['dim']}, positions 0–{sim['length'] - 1}:",
        "",
        f"- largest spread of PE(p)·PE(q) among pairs at the same distance q - p: "
        f"**{_fmt(sim['max_spread_at_equal_distance'])}** "
        f"(the values reach {sim['self_similarity']:.0f} = d/2);",
        f"- largest difference from Σ_i cos((q - p)·w_i): {_fmt(sim['max_deviation_from_formula'])}; "
        f"the same matrix {sim['far_offset']} positions further on differs by at most "
        f"{_fmt(sim['max_far_minus_near'])};",
        f"- it is even in q - p and not monotone: it first rises again at distance "
        f"{sim['first_rise_distance']}, and its minimum over these distances, "
        f"{sim['min_similarity']:.2f}, is at distance {sim['min_similarity_distance']}.",
        "",
        "The dot product is a function of q - p alone, up to float32 rounding, but of |q - p|: it cannot tell "
        "before from after, and it does not decrease steadily with distance.",
        "",
        "## 5. Uniqueness",
        "",
        "![Uniqueness](uniqueness.png)",
        "",
        "Smallest ‖PE(p) - PE(q)‖ over p ≠ q < L (it depends on q - p only), and rounding: a format of unit "
        "roundoff u moves an encoding by at most u·sqrt(d/2), so encodings more than 2u·sqrt(d/2) apart never "
        "round to the same vector (u = 2^-24 for float32, 2^-8 for bfloat16). Distinct rows are counted "
        f"bitwise over the {unique['max_length']} positions.",
        "",
        f"| d | min distance, L = {unique['lengths'][0]} | min distance, L = {unique['max_length']} "
        f"| at offset | bfloat16 2u·sqrt(d/2) | distinct bfloat16 rows | distinct float32 rows |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in unique["per_dim"]:
        lines.append(
            f"| {entry['dim']} | {entry['min_distance'][0]:.3g} | {entry['min_distance'][-1]:.3g} | "
            f"{entry['closest_offset'][-1]} | {entry['bfloat16_threshold']:.3g} | "
            f"{entry['distinct_bfloat16']} / {unique['max_length']} | {entry['distinct_float32']} / "
            f"{unique['max_length']} |"
        )
    lines += ["", _uniqueness_sentence(unique), "", "## 6. Extrapolation", "", extra["sentence"], ""]
    if extra["status"] != "found":
        lines += [f"Expected at `{extra['path']}`.", ""]
    if extra["status"] == "found":
        lines += [
            f"Source: `{extra['path']}`; per-token accuracy, mean over seeds.",
            "",
            "| task | mode | scheme | in distribution | beyond training |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['task']} | {r['mode']} | {r['scheme']} | {r['in_distribution']:.3f} | {r['beyond']:.3f} |"
            for r in extra["rows"]
        ]
        lines.append("")
    meta = numbers["meta"]
    lines += [
        "---",
        f"Run: preset `{numbers['preset']}`, {meta['seconds']:.0f} s, jax {meta['jax']} on {meta['backend']}.",
        "",
    ]
    return "\n".join(lines)


def _uniqueness_sentence(unique: dict[str, Any]) -> str:
    entries = unique["per_dim"]
    length = unique["max_length"]
    neighbours = [e for e in entries if all(offset == 1 for offset in e["closest_offset"])]
    repeating = [e for e in entries if e not in neighbours]
    merged = [e for e in entries if e["distinct_bfloat16"] < length]
    merged_f32 = [e for e in entries if e["distinct_float32"] < length]
    parts = []
    if neighbours:
        smallest = min(neighbours, key=lambda e: e["dim"])
        parts.append(
            f"for d ≥ {smallest['dim']} the closest two encodings up to L = {length} are always neighbours, at "
            f"distance {smallest['min_distance'][-1]:.2f} or more, "
            f"{smallest['min_distance'][-1] / smallest['bfloat16_threshold']:.0f}× the bfloat16 bound"
        )
    if repeating:
        parts.append(
            "narrower encodings come back close to themselves: "
            + ", ".join(
                f"d = {e['dim']} at offset {e['closest_offset'][-1]} ({e['min_distance'][-1]:.2g}"
                + (", below the bfloat16 bound)" if e["min_distance"][-1] <= e["bfloat16_threshold"] else ")")
                for e in repeating
            )
        )
    if merged:
        parts.append(
            "bfloat16 rounding actually merges positions for "
            + ", ".join(f"d = {e['dim']} ({e['distinct_bfloat16']} distinct of {length})" for e in merged)
        )
    else:
        parts.append(f"bfloat16 keeps all {length} positions distinct for every d shown")
    parts.append(
        "float32 keeps every position distinct for every d shown"
        if not merged_f32
        else "float32 merges positions for " + ", ".join(f"d = {e['dim']}" for e in merged_f32)
    )
    sentence = "; ".join(parts)
    return sentence[0].upper() + sentence[1:] + "."
