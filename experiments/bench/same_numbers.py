"""The same numbers on every backend: the encodings on the default device against the CPU's, in ulps.

The angle kernel is exact fixed-point arithmetic plus one polynomial, so a backend can differ from another
only through the polynomial's float32 rounding (e.g. fused multiply-adds). This module computes each case in
one process on the default device and on ``jax.devices("cpu")[0]`` and reports the largest difference in units
in the last place (ulps: the distance between the two values counted in representable numbers of the output
dtype), with a SHA-256 of each backend's output so that runs on other machines can be compared too.

Cases: ``sinusoidal`` of ``10**6`` random int32 positions (the whole int32 range) at several dims; float32
positions with fractions; a bfloat16 output; ``sinusoidal_table`` rows at random offsets (the angle-addition
path); ``apply_rotary`` of random queries at random positions. On a CPU-only machine both sides are the CPU
(a check of the machinery, not of a second backend); the result says which backends were compared.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax import apply_rotary, sinusoidal, sinusoidal_table

__all__ = ["ulp_distance", "run"]

_INT_VIEW = {2: np.int16, 4: np.int32}


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise distance between two floating arrays of one dtype, in representable values (int64).

    Both signs of zero are 0 apart; two NaNs are 0 apart; a NaN and a number are ``2**62`` apart (counted as
    a mismatch, never as close).

    >>> one = np.float32(1.0)
    >>> int(ulp_distance(np.array([one]), np.array([np.nextafter(one, np.float32(2))]))[0])
    1
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        raise ValueError(
            f"ulp_distance(a={a.dtype}{a.shape}, b={b.dtype}{b.shape}): dtypes and shapes must match"
        )
    bits = 8 * a.dtype.itemsize
    view = _INT_VIEW[a.dtype.itemsize]

    def ordered(x: np.ndarray) -> np.ndarray:
        signed = x.view(view).astype(np.int64)
        magnitude = signed & ((1 << (bits - 1)) - 1)
        return np.where(signed < 0, -magnitude, magnitude)

    distance = np.abs(ordered(a) - ordered(b))
    nan_a, nan_b = np.isnan(a.astype(np.float32)), np.isnan(b.astype(np.float32))
    distance = np.where(nan_a & nan_b, 0, distance)
    return np.where(nan_a != nan_b, np.int64(2**62), distance)


def _compare(fn, args: tuple, chunks: int, reference: Any, target: Any) -> dict[str, Any]:
    """Runs ``fn`` chunk by chunk (over the first axis of every argument) on both devices and compares."""
    jitted = jax.jit(fn)
    worst, total, values = 0, 0, 0
    hashes = {"reference": hashlib.sha256(), "target": hashlib.sha256()}
    for chunk in zip(*(np.array_split(a, chunks) for a in args), strict=True):
        ref = np.asarray(jitted(*jax.device_put(chunk, reference)))
        out = np.asarray(jitted(*jax.device_put(chunk, target)))
        distance = ulp_distance(ref, out)
        worst = max(worst, int(distance.max(initial=0)))
        total += int((distance > 0).sum())
        values += distance.size
        hashes["reference"].update(ref.tobytes())
        hashes["target"].update(out.tobytes())
    return {
        "values": values,
        "max_ulps": worst,
        "fraction_differing": total / max(values, 1),
        "sha256_reference": hashes["reference"].hexdigest()[:16],
        "sha256_target": hashes["target"].hexdigest()[:16],
    }


def run(quick: bool = False, accelerator: bool = False, positions: int | None = None) -> dict[str, Any]:
    """Max ulp difference between the default device and the CPU, per case (see the module docstring).

    Args:
      quick: ``10**4`` positions instead of ``10**6`` (a smoke run).
      accelerator: unused (the cases are the same everywhere); kept for the sections' uniform signature.
      positions: overrides the number of random positions.

    Returns:
      ``reference_backend``, ``target_backend``, per case ``values``, ``max_ulps``, ``fraction_differing``
      and output hashes, and ``max_ulps`` over all cases.
    """
    del accelerator
    count = positions or (10_000 if quick else 1_000_000)
    reference, target = jax.devices("cpu")[0], jax.devices()[0]
    rng = np.random.default_rng(0)
    int_positions = rng.integers(-(2**31), 2**31, size=count, dtype=np.int64).astype(np.int32)
    float_positions = (rng.uniform(-(2**24), 2**24, size=count)).astype(np.float32)
    rows, length, table_dim = (4, 256, 64) if quick else (16, 4096, 256)
    offsets = rng.integers(0, 2**31 - length, size=rows, dtype=np.int64).astype(np.int32)
    rotary_rows, rotary_length = (4, 128) if quick else (16, 4096)
    queries = rng.standard_normal((rotary_rows, rotary_length, 2, 64)).astype(np.float32)
    rotary_positions = rng.integers(0, 2**31, size=(rotary_rows, rotary_length), dtype=np.int64).astype(
        np.int32
    )

    def chunks_for(values_per_position: int) -> int:
        return max(1, count * values_per_position // 2**24)

    cases: dict[str, Any] = {}
    for dim in (8, 64, 1024):
        cases[f"sinusoidal_int32_dim{dim}"] = _compare(
            lambda p, dim=dim: sinusoidal(p, dim), (int_positions,), chunks_for(dim), reference, target
        )
    cases["sinusoidal_float32_positions_dim64"] = _compare(
        lambda p: sinusoidal(p, 64), (float_positions,), chunks_for(64), reference, target
    )
    cases["sinusoidal_int32_dim64_bfloat16"] = _compare(
        lambda p: sinusoidal(p, 64, dtype=jnp.bfloat16), (int_positions,), chunks_for(64), reference, target
    )
    cases[f"sinusoidal_table_{rows}x{length}x{table_dim}_random_offsets"] = _compare(
        lambda o: sinusoidal_table(length, table_dim, offset=o), (offsets,), 1, reference, target
    )
    cases[f"apply_rotary_{rotary_rows}x{rotary_length}x2x64_random_positions"] = _compare(
        lambda q, p: apply_rotary(q, p, layout="interleaved"), (queries, rotary_positions), 1, reference, target
    )
    return {
        "reference_backend": reference.platform,
        "target_backend": target.platform,
        "target_device_kind": target.device_kind,
        "random_positions": count,
        "note": "the CPU against itself: a check of the machinery only"
        if target.platform == "cpu"
        else "default device against the CPU backend, same process, same inputs",
        "cases": cases,
        "max_ulps": max(case["max_ulps"] for case in cases.values()),
    }
