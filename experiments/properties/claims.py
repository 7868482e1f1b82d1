"""The measurements behind each claim, computed from the library's encodings and analysed in float64 numpy.

Every function takes an ``encode`` callable with the signature of :func:`posenc_jax.sinusoidal`
(``encode(positions, dim, dtype=...)``), so the same measurement can run on the plain or the jitted function.
Each returns a JSON-ready dict; the figures and the text are drawn from these dicts only.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from posenc_jax import paper_frequencies, sinusoidal
from posenc_jax.internal import check_even_dim
from tests.references import reference_angles

__all__ = [
    "FLOAT32_UNIT_ROUNDOFF",
    "BFLOAT16_UNIT_ROUNDOFF",
    "Encode",
    "count_distinct_rows",
    "distance_profile",
    "fit_pair_blocks",
    "nearest_neighbour_distances",
    "offset_maps",
    "rotation_blocks",
    "similarity",
    "uniqueness",
    "worked_table",
]

Encode = Callable[..., Any]

# Unit roundoff u (half an ulp at 1; rounding moves x by at most u * |x|): 24 significand bits for float32,
# 8 for bfloat16.
FLOAT32_UNIT_ROUNDOFF = 2.0**-24
BFLOAT16_UNIT_ROUNDOFF = 2.0**-8


def _check_positive_int(value: object, caller: str, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ValueError(f"{caller}({name}={value!r}): {name} must be an integer >= {minimum}")
    return int(value)


def _encode64(encode: Encode, positions: np.ndarray, dim: int) -> np.ndarray:
    """The library's float32 encoding of ``positions``, returned as float64 for the analysis."""
    return np.asarray(encode(jnp.asarray(positions, jnp.int32), dim), dtype=np.float64)


def worked_table(
    dim: int = 8, positions: Sequence[int] = (0, 1, 2), *, encode: Encode = sinusoidal
) -> dict[str, Any]:
    """The index ``i`` worked out: one row per dimension of a small encoding, as computed by the library.

    Args:
      dim: the encoding width (positive, even).
      positions: the positions whose values are listed.
      encode: the encoding function (``posenc_jax.sinusoidal`` or a jitted version of it).

    Returns:
      ``{"dim", "base", "positions", "rows"}``; each row has ``dimension`` (interleaved, the paper's),
      ``split_dimension`` (where the same value sits in the split layout), ``i``, ``function`` (``"sin"`` or
      ``"cos"``), ``frequency`` ``w_i``, ``wavelength`` ``2π / w_i`` and ``values`` (one per position).

    Raises:
      ValueError: for a bad ``dim`` or an empty ``positions``, and the library's errors for bad positions.

    >>> worked_table(4, [0])["rows"][1]["function"]
    'cos'
    """
    dim = check_even_dim("worked_table", "dim", dim)
    positions = list(positions)
    if not positions:
        raise ValueError("worked_table(positions=[]): at least one position is needed")
    frequencies = paper_frequencies(dim)
    values = _encode64(encode, np.asarray(positions), dim)  # [positions, dim]
    rows = []
    for dimension in range(dim):
        i, is_cos = divmod(dimension, 2)
        rows.append(
            {
                "dimension": dimension,
                "split_dimension": i + (dim // 2 if is_cos else 0),
                "i": i,
                "function": "cos" if is_cos else "sin",
                "frequency": float(frequencies[i]),
                "wavelength": float(2 * math.pi / frequencies[i]),
                "values": values[:, dimension].tolist(),
            }
        )
    return {"dim": dim, "base": 10_000.0, "positions": positions, "rows": rows}


def rotation_blocks(angles: np.ndarray) -> np.ndarray:
    """The 2x2 maps ``[sin a, cos a] -> [sin(a + b), cos(a + b)]`` for angles ``b``: ``[..., 2, 2]`` float64.

    ``sin(a + b) = cos b sin a + sin b cos a`` and ``cos(a + b) = -sin b sin a + cos b cos a``.

    >>> rotation_blocks(np.array([0.0]))[0]
    array([[ 1.,  0.],
           [-0.,  1.]])
    """
    b = np.asarray(angles, dtype=np.float64)
    c, s = np.cos(b), np.sin(b)
    return np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)


def fit_pair_blocks(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares 2x2 blocks ``B_i`` with ``y_pair_i ≈ B_i x_pair_i`` for every (sin, cos) pair, in float64.

    Each pair is fitted separately: a single ``[dim, dim]`` fit over positions that cover only a small arc
    of the slow pairs is ill-conditioned, while each 2x2 fit over positions that cover whole turns is not.

    Args:
      x: ``[positions, dim]`` encodings in the interleaved layout (pair ``i`` on dimensions ``2i, 2i + 1``).
      y: ``[positions, dim]`` encodings of the shifted positions, same layout.

    Returns:
      ``(blocks, residual)``: ``blocks`` ``[dim // 2, 2, 2]`` and the largest absolute residual of each
      pair's fit, ``[dim // 2]``.

    Raises:
      ValueError: if the shapes differ, are not 2-D with an even number of columns, or have fewer than two
        rows.

    >>> a = np.arange(8.0)[:, None]
    >>> x, y = np.hstack([np.sin(a), np.cos(a)]), np.hstack([np.sin(a + 1), np.cos(a + 1)])
    >>> blocks, res = fit_pair_blocks(x, y)
    >>> bool(np.allclose(blocks[0], rotation_blocks(np.array(1.0))))
    True
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2 or x.shape[1] % 2 or x.shape[0] < 2:
        raise ValueError(
            f"fit_pair_blocks(x shape={x.shape}, y shape={y.shape}): x and y must have the same shape "
            "[positions >= 2, dim] with dim even"
        )
    n = x.shape[1] // 2
    blocks = np.empty((n, 2, 2))
    residual = np.empty(n)
    for i in range(n):
        inputs, targets = x[:, 2 * i : 2 * i + 2], y[:, 2 * i : 2 * i + 2]
        solution, *_ = np.linalg.lstsq(inputs, targets, rcond=None)  # targets ≈ inputs @ solution
        blocks[i] = solution.T
        residual[i] = np.abs(inputs @ solution - targets).max()
    return blocks, residual


def _block_diagonal(blocks: np.ndarray) -> np.ndarray:
    n = blocks.shape[0]
    out = np.zeros((2 * n, 2 * n))
    for i in range(n):
        out[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = blocks[i]
    return out


def offset_maps(
    dim: int = 64,
    offsets: Sequence[int] = (1, 10, 100, 1000, 10_000),
    *,
    num_positions: int = 4096,
    window: int = 2**20,
    far_start: int = 2**30,
    narrow_length: int = 512,
    image_offset: int = 10,
    seed: int = 0,
    encode: Encode = sinusoidal,
) -> dict[str, Any]:
    """Measures ``PE(pos + k) = M_k PE(pos)``: fitted blocks, their residual, their distance to rotations.

    Positions are ``num_positions`` random integers in ``[0, window)``, wide enough for the slowest pair
    (wavelength about ``2π · 10^4``) to turn several times. The same fit on ``far_start + positions`` shows
    that ``M_k`` does not depend on where the positions are. Two full ``[dim, dim]`` fits show why the fit
    is done per pair: over the wide positions the full fit is well posed and its off-block entries vanish;
    over ``0 … narrow_length - 1`` it is ill-conditioned.

    Args:
      dim: the encoding width.
      offsets: the offsets ``k`` (positive integers).
      num_positions: positions per fit.
      window: the positions are drawn from ``[0, window)``.
      far_start: start of the far window (``far_start + window + max(offsets) < 2**31``).
      narrow_length: length of the narrow window of the ill-conditioned full fit.
      image_offset: the ``k`` whose full fitted matrix is kept for the figure.
      seed: seed of the random positions.
      encode: the encoding function.

    Returns:
      A dict with the frequencies, per offset the fitted blocks, residuals, distances to the exact rotations
      and to the far-window blocks, and the two full fits.

    Raises:
      ValueError: for a bad ``dim``, non-positive or out-of-range offsets or sizes.

    >>> offset_maps(8, (3,), num_positions=64)["max_residual"] < 1e-6
    True
    """
    caller = "offset_maps"
    dim = check_even_dim(caller, "dim", dim)
    offsets = [_check_positive_int(k, caller, "offsets") for k in offsets]
    if not offsets:
        raise ValueError(f"{caller}(offsets=[]): at least one offset is needed")
    num_positions = _check_positive_int(num_positions, caller, "num_positions", minimum=2)
    window = _check_positive_int(window, caller, "window", minimum=2)
    narrow_length = _check_positive_int(narrow_length, caller, "narrow_length", minimum=2)
    image_offset = _check_positive_int(image_offset, caller, "image_offset")
    if far_start + window + max(offsets + [image_offset]) >= 2**31:
        raise ValueError(
            f"{caller}(far_start={far_start}, window={window}, offsets={offsets}): "
            "far_start + window + offset must stay below 2**31"
        )
    frequencies = paper_frequencies(dim)
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.integers(0, window, size=num_positions))
    near = _encode64(encode, positions, dim)
    far = _encode64(encode, positions + far_start, dim)

    per_offset = []
    for k in offsets:
        blocks, residual = fit_pair_blocks(near, _encode64(encode, positions + k, dim))
        far_blocks, far_residual = fit_pair_blocks(far, _encode64(encode, positions + far_start + k, dim))
        exact = rotation_blocks(k * frequencies)
        per_offset.append(
            {
                "offset": k,
                "blocks": blocks.tolist(),
                "residual_per_pair": residual.tolist(),
                "max_residual": float(max(residual.max(), far_residual.max())),
                "block_error_per_pair": np.abs(blocks - exact).max(axis=(1, 2)).tolist(),
                "max_block_error": float(np.abs(blocks - exact).max()),
                "max_far_minus_near": float(np.abs(far_blocks - blocks).max()),
            }
        )

    def full_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        solution, *_ = np.linalg.lstsq(x, y, rcond=None)  # y ≈ x @ solution, i.e. PE(p + k) = M PE(p)
        return solution.T, float(np.abs(x @ solution - y).max())

    exact_image = _block_diagonal(rotation_blocks(image_offset * frequencies))
    off_block = _block_diagonal(np.ones((dim // 2, 2, 2))) == 0
    wide_matrix, wide_residual = full_fit(near, _encode64(encode, positions + image_offset, dim))
    narrow = np.arange(narrow_length)
    narrow_x = _encode64(encode, narrow, dim)
    narrow_matrix, narrow_residual = full_fit(narrow_x, _encode64(encode, narrow + image_offset, dim))
    return {
        "dim": dim,
        "frequencies": frequencies.tolist(),
        "num_positions": num_positions,
        "window": window,
        "far_start": far_start,
        "offsets": per_offset,
        "max_residual": max(entry["max_residual"] for entry in per_offset),
        "max_block_error": max(entry["max_block_error"] for entry in per_offset),
        "max_far_minus_near": max(entry["max_far_minus_near"] for entry in per_offset),
        "image_offset": image_offset,
        "wide_full_fit": {
            "matrix": wide_matrix.tolist(),
            "condition_number": float(np.linalg.cond(near)),
            "max_residual": wide_residual,
            "max_off_block": float(np.abs(wide_matrix[off_block]).max()),
            "max_error_vs_rotation": float(np.abs(wide_matrix - exact_image).max()),
        },
        "narrow_full_fit": {
            "length": narrow_length,
            "condition_number": float(np.linalg.cond(narrow_x)),
            "max_residual": narrow_residual,
            "max_off_block": float(np.abs(narrow_matrix[off_block]).max()),
            "max_error_vs_rotation": float(np.abs(narrow_matrix - exact_image).max()),
        },
    }


def distance_profile(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per distance ``δ = q - p`` of a square ``[L, L]`` matrix: mean, min and max over its diagonal ``δ``.

    Args:
      matrix: ``[L, L]`` with entry ``[p, q]`` for positions ``p, q``.

    Returns:
      ``{"distance": [2L-1] from -(L-1) to L-1, "mean", "min", "max"}`` (float64 arrays).

    Raises:
      ValueError: if ``matrix`` is not square 2-D.

    >>> distance_profile(np.array([[1.0, 2.0], [3.0, 1.0]]))["max"]
    array([3., 1., 2.])
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"distance_profile(matrix shape={matrix.shape}): matrix must be square [L, L], L >= 1")
    length = matrix.shape[0]
    distances = np.arange(-(length - 1), length)
    diagonals = [np.diagonal(matrix, offset=int(d)) for d in distances]
    return {
        "distance": distances,
        "mean": np.array([d.mean() for d in diagonals]),
        "min": np.array([d.min() for d in diagonals]),
        "max": np.array([d.max() for d in diagonals]),
    }


def similarity(
    dim: int = 64, length: int = 256, *, far_offset: int = 1_000_000, encode: Encode = sinusoidal
) -> dict[str, Any]:
    """Measures that ``PE(p) · PE(q)`` depends on ``q - p`` only, near 0 and ``far_offset`` positions away.

    Args:
      dim: the encoding width.
      length: positions ``0 … length - 1`` (and ``far_offset + 0 … length - 1``).
      far_offset: start of the far block of positions.
      encode: the encoding function.

    Returns:
      The similarity matrix, the per-distance profile (with the float64 formula ``Σ_i cos(δ w_i)``), the
      largest deviation from the formula, the largest spread of the dot product among pairs at
      the same distance, the largest change between the near and far blocks, the norm ``PE(p) · PE(p)``
      (``dim / 2`` by ``sin² + cos² = 1``) and the first distance at which the similarity rises again.

    Raises:
      ValueError: for a bad ``dim``, ``length < 2`` or a negative ``far_offset``.

    >>> round(similarity(8, 4)["self_similarity"], 5)
    4.0
    """
    caller = "similarity"
    dim = check_even_dim(caller, "dim", dim)
    length = _check_positive_int(length, caller, "length", minimum=2)
    far_offset = _check_positive_int(far_offset, caller, "far_offset", minimum=0)
    positions = np.arange(length)
    near = _encode64(encode, positions, dim)
    far = _encode64(encode, positions + far_offset, dim)
    matrix, far_matrix = near @ near.T, far @ far.T
    profile = distance_profile(matrix)
    spread = profile["max"] - profile["min"]
    # The formula: PE(p) · PE(q) = Σ_i sin(p w_i) sin(q w_i) + cos(p w_i) cos(q w_i) = Σ_i cos((q - p) w_i).
    formula = np.cos(reference_angles(profile["distance"], paper_frequencies(dim))).sum(axis=1)
    profile["formula"] = formula
    ahead = profile["mean"][length - 1 :]  # distances 0 … length-1
    rises = np.nonzero(np.diff(ahead) > 0)[0]
    return {
        "dim": dim,
        "length": length,
        "far_offset": far_offset,
        "matrix": matrix,
        "profile": profile,
        "max_spread_at_equal_distance": float(spread.max()),
        "max_deviation_from_formula": float(
            max(np.abs(profile["max"] - formula).max(), np.abs(profile["min"] - formula).max())
        ),
        "max_far_minus_near": float(np.abs(far_matrix - matrix).max()),
        "self_similarity": float(np.diagonal(matrix).mean()),
        "first_rise_distance": int(rises[0]) + 1 if rises.size else None,
        "similarity_at_first_rise": float(ahead[rises[0] + 1]) if rises.size else None,
        "min_similarity": float(ahead.min()),
        "min_similarity_distance": int(np.argmin(ahead)),
    }


def nearest_neighbour_distances(dim: int, max_length: int, *, encode: Encode = sinusoidal) -> np.ndarray:
    """``‖PE(δ) - PE(0)‖`` for ``δ = 1 … max_length - 1``, from the library's float32 encodings, in float64.

    ``‖PE(p) - PE(q)‖² = dim - 2 PE(p) · PE(q)`` depends on ``q - p`` only (see :func:`similarity`), so the
    smallest distance between two different positions among ``0 … L - 1`` is the minimum of this array over
    ``δ < L``.

    Args:
      dim: the encoding width.
      max_length: the longest length considered (>= 2).
      encode: the encoding function.

    Returns:
      ``[max_length - 1]`` float64.

    Raises:
      ValueError: for a bad ``dim`` or ``max_length < 2``.

    >>> nearest_neighbour_distances(2, 3).round(3)  # 2 sin(δ / 2)
    array([0.959, 1.683])
    """
    dim = check_even_dim("nearest_neighbour_distances", "dim", dim)
    max_length = _check_positive_int(max_length, "nearest_neighbour_distances", "max_length", minimum=2)
    table = _encode64(encode, np.arange(max_length), dim)
    return np.sqrt(((table[1:] - table[0]) ** 2).sum(axis=1))


def count_distinct_rows(array: np.ndarray) -> int:
    """The number of bitwise-distinct rows of a 2-D array (any dtype).

    >>> count_distinct_rows(np.array([[1, 2], [1, 2], [2, 1]], dtype=np.int16))
    2
    """
    array = np.ascontiguousarray(array)
    if array.ndim != 2:
        raise ValueError(f"count_distinct_rows(array shape={array.shape}): array must be 2-D")
    if array.shape[0] == 0:
        return 0
    rows = array.view(np.dtype((np.void, array.dtype.itemsize * array.shape[1]))).ravel()
    return int(np.unique(rows).shape[0])


def uniqueness(
    dims: Sequence[int] = (2, 4, 8, 16, 32, 64, 128, 256),
    max_log2_length: int = 16,
    *,
    min_log2_length: int = 4,
    encode: Encode = sinusoidal,
) -> dict[str, Any]:
    """The smallest distance between the encodings of two different positions, per width and length.

    Compared with rounding: rounding to a format of unit roundoff ``u`` moves an encoding by at most
    ``u · ‖PE‖ = u · sqrt(dim / 2)``, so two encodings farther apart than ``2 u sqrt(dim / 2)`` can never
    round to the same vector. The bitwise-distinct rows of the library's float32 and bfloat16 tables over
    ``2**max_log2_length`` positions are counted too.

    Args:
      dims: encoding widths.
      max_log2_length: the longest length is ``2**max_log2_length``.
      min_log2_length: the shortest length reported is ``2**min_log2_length``.
      encode: the encoding function (called with ``dtype=jnp.bfloat16`` too).

    Returns:
      ``{"lengths", "per_dim": [{"dim", "min_distance" (per length), "closest_offset" (per length),
      "float32_threshold", "bfloat16_threshold", "distinct_float32", "distinct_bfloat16"}]}``.

    Raises:
      ValueError: for bad widths or lengths.

    >>> uniqueness((2,), 5, min_log2_length=5)["per_dim"][0]["closest_offset"]  # 25 ≈ 8π
    [25]
    """
    caller = "uniqueness"
    max_log2_length = _check_positive_int(max_log2_length, caller, "max_log2_length")
    min_log2_length = _check_positive_int(min_log2_length, caller, "min_log2_length")
    if min_log2_length > max_log2_length or max_log2_length > 24:
        raise ValueError(
            f"{caller}(min_log2_length={min_log2_length}, max_log2_length={max_log2_length}): "
            "need 1 <= min_log2_length <= max_log2_length <= 24"
        )
    dims = [check_even_dim(caller, "dims", dim) for dim in dims]
    if not dims:
        raise ValueError(f"{caller}(dims=[]): at least one width is needed")
    max_length = 2**max_log2_length
    lengths = [2**e for e in range(min_log2_length, max_log2_length + 1)]
    per_dim = []
    for dim in dims:
        distances = nearest_neighbour_distances(dim, max_length, encode=encode)
        running_min = np.minimum.accumulate(distances)
        running_arg = np.array([int(np.argmin(distances[: n - 1])) + 1 for n in lengths])
        positions = jnp.arange(max_length, dtype=jnp.int32)
        norm = math.sqrt(dim / 2)
        per_dim.append(
            {
                "dim": dim,
                "min_distance": [float(running_min[n - 2]) for n in lengths],
                "closest_offset": running_arg.tolist(),
                "float32_threshold": 2 * FLOAT32_UNIT_ROUNDOFF * norm,
                "bfloat16_threshold": 2 * BFLOAT16_UNIT_ROUNDOFF * norm,
                "distinct_float32": count_distinct_rows(np.asarray(encode(positions, dim))),
                "distinct_bfloat16": count_distinct_rows(
                    np.asarray(encode(positions, dim, dtype=jnp.bfloat16)).view(np.uint16)
                ),
            }
        )
    return {"lengths": lengths, "max_length": max_length, "per_dim": per_dim}
