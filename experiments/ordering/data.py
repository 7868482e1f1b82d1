"""Examples, randomized positions, packing and the training data of the ordering experiment.

Two formats. **Encoder**: the input symbols, then one identical ``EMPTY`` token per output position; the model
predicts every output symbol at its ``EMPTY`` token in one pass. **Decoder** (causal): the input symbols, a
``SEP`` token, then the output symbols; the prediction of output ``j`` is made at the token before it
(``SEP`` for ``j = 0``), teacher-forced at training. Both formats have ``n + m`` tokens for an input of
length ``n`` and an output of length ``m`` (the decoder never feeds the last output symbol back).

Packing: a batch row holds ``segments_per_row`` examples one after the other (block-diagonal attention via
segment ids, positions restart at 0 in each segment). At training, every row pairs an input length ``n``
with ``N + 1 - n``; lengths stay uniform on ``1 … N`` and, because every task's sequence length is linear
in ``n``, each row is filled exactly: no padding at all. Evaluation sets pair lengths the same way. The
reference code's sampling is the other option: one length per batch, one example per row, padded
(``one_length``).

Generation runs on the host in numpy (``np.random.Generator``): the compiled programs contain no random
number generation (whose compilation is slow on CPU), and the data of a seed is the same on every backend and
device count.

Randomized positions (Ruoss et al. 2023) are a sorted random subset of ``[0, position_range)`` of exactly the
sequence's length, drawn per example or once per batch of one length (`sorted_random_positions`), once for
every layer or once per attention layer (`position_draws`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from experiments.ordering.tasks import EMPTY, MODES, PAD, SEP, Examples, Task, get_task, make_examples  # noqa: F401 (doctests, re-exports)

__all__ = [
    "Examples",
    "Batch",
    "make_examples",
    "pack_examples",
    "sorted_random_positions",
    "training_lengths",
    "training_batch",
    "training_chunk",
]


class Batch(NamedTuple):
    """A fixed-shape batch of packed rows; every field is `[..., rows, row_length]`.

    Attributes:
      tokens: int32 model inputs.
      positions: int32 position of each token within its example (restarting at 0 in each segment), or the
        randomized positions of the example.
      segment_ids: int32, ``1 …`` per example in the row, 0 for padding; attention stays within a segment.
      targets: int32 output symbol predicted at this token (0 where ``weights`` is 0).
      weights: float32, 1 where the token predicts an output symbol, else 0.
      example_ids: int32 index of the token's example in the `Examples` it was packed from, -1 for padding.
    """

    tokens: np.ndarray
    positions: np.ndarray
    segment_ids: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    example_ids: np.ndarray


def sorted_random_positions(
    rng: np.random.Generator,
    lengths: np.ndarray,
    width: int,
    max_position: int,
    *,
    share: int = 1,
    start_at_zero: bool = False,
) -> np.ndarray:
    """Randomized positions: sorted uniformly random subsets of ``[0, max_position)``.

    Every example gets exactly as many distinct positions as it has tokens, in increasing order. With
    ``share=1`` each example has its own draw; with ``share > 1`` each run of ``share`` consecutive examples
    (a batch of one length, as the reference draws them) shares one draw, so the examples of a run must have
    equal lengths. The mean gap between consecutive positions of an ``n``-token draw is
    ``(max_position + 1) / (n + 1)`` (counting the gap before the first).

    Args:
      rng: numpy random generator.
      lengths: `[examples]` int number of positions wanted per example, each ``≤ width``.
      width: number of columns of the result (``≤ max_position``).
      max_position: positions are drawn from ``0 … max_position - 1``.
      share: consecutive examples sharing one draw (a divisor of the number of examples).
      start_at_zero: the first position of every draw is 0 and the other ``n - 1`` are drawn from
        ``1 … max_position - 1`` (the reference's randomized relative offsets ``0 < r_1 < … < r_{n-1}``).

    Returns:
      `[examples, width]` int32; row ``e`` holds its ``lengths[e]`` positions in increasing order, then
      ``max_position`` (a filler that is never a valid position).

    Raises:
      ValueError: if ``width > max_position``, a length exceeds ``width``, ``share`` does not divide the
        number of examples or the examples sharing a draw have different lengths.

    >>> p = sorted_random_positions(np.random.default_rng(0), np.array([3]), 4, 10)
    >>> bool((np.diff(p[0, :3]) > 0).all()) and int(p[0, 3]) == 10
    True
    """
    lengths = np.asarray(lengths)
    if width > max_position:
        raise ValueError(
            f"sorted_random_positions(width={width}, max_position={max_position}): "
            "width must not exceed max_position"
        )
    if lengths.size and lengths.max() > width:
        raise ValueError(
            f"sorted_random_positions(lengths max={lengths.max()}, width={width}): lengths must be ≤ width"
        )
    if share < 1 or lengths.shape[0] % share:
        raise ValueError(
            f"sorted_random_positions(share={share}): must be a positive divisor of the number of examples "
            f"({lengths.shape[0]})"
        )
    if share > 1:
        groups = lengths.reshape(-1, share)
        if (groups != groups[:, :1]).any():
            raise ValueError(
                f"sorted_random_positions(share={share}): the examples sharing a draw must have equal "
                "lengths (one length per batch)"
            )
        draws = sorted_random_positions(rng, groups[:, 0], width, max_position, start_at_zero=start_at_zero)
        return np.repeat(draws, share, axis=0)
    if start_at_zero:
        rest = sorted_random_positions(rng, np.maximum(lengths - 1, 0), width, max_position - 1)
        shifted = np.where(rest < max_position - 1, rest + 1, max_position)
        first = np.where(lengths > 0, 0, max_position)[:, None]
        return np.concatenate([first, shifted[:, : width - 1]], axis=-1).astype(np.int32)
    # The `lengths[e]` smallest of max_position i.i.d. uniform scores pick a uniformly random subset: the
    # `width` smallest by a partition (linear time), then the first `lengths[e]` of those in score order.
    scores = rng.random((lengths.shape[0], max_position))
    smallest = np.argpartition(scores, width - 1, axis=-1)[:, :width]
    by_score = np.take_along_axis(smallest, np.argsort(np.take_along_axis(scores, smallest, -1), -1), -1)
    chosen = np.where(np.arange(width) < lengths[:, None], by_score, max_position)
    return np.sort(chosen, axis=-1).astype(np.int32)


def position_draws(
    rng: np.random.Generator,
    lengths: np.ndarray,
    width: int,
    max_position: int,
    *,
    share: int = 1,
    draws: int = 1,
    start_at_zero: bool = False,
) -> np.ndarray:
    """`sorted_random_positions`, ``draws`` independent times (one per attention layer, as the reference
    draws its rotary and relative positions).

    Returns:
      `[examples, width]` for ``draws=1`` (one draw serves every layer), else `[examples, width, draws]`.
    """
    out = [
        sorted_random_positions(rng, lengths, width, max_position, share=share, start_at_zero=start_at_zero)
        for _ in range(draws)
    ]
    return out[0] if draws == 1 else np.stack(out, axis=-1)


def pack_examples(
    task: Task,
    examples: Examples,
    *,
    mode: str,
    segments_per_row: int,
    row_length: int,
    example_positions: np.ndarray | None = None,
) -> Batch:
    """Packs examples ``e = r * segments_per_row + s`` into row ``r``, one segment after another.

    Args:
      task: the task the examples belong to.
      examples: `Examples` with ``rows * segments_per_row`` examples.
      mode: ``"encoder"`` or ``"decoder"`` (see the module docstring).
      segments_per_row: examples per row.
      row_length: row length; must hold every row's examples.
      example_positions: optional `[examples, ≥ longest example]` int positions of each example's tokens
        (e.g. from `sorted_random_positions`), or `[examples, ≥ longest example, draws]` (a draw per
        attention layer, `position_draws`); default ``0, 1, …`` within each example.

    Returns:
      The `Batch` (`[rows, row_length]` fields; positions `[rows, row_length, draws]` for several draws).

    Raises:
      ValueError: for an unknown ``mode``, an example count not divisible by ``segments_per_row`` or rows
        that do not fit in ``row_length``.

    >>> ex = make_examples(get_task("reverse"), np.random.default_rng(0), np.array([2, 1]), 2)
    >>> pack_examples(get_task("reverse"), ex, mode="encoder", segments_per_row=2, row_length=6).segment_ids
    array([[1, 1, 1, 1, 2, 2]], dtype=int32)
    """
    if mode not in MODES:
        raise ValueError(f"pack_examples(mode={mode!r}): mode must be one of {MODES}")
    num_examples = examples.lengths.shape[0]
    if segments_per_row < 1 or num_examples % segments_per_row:
        raise ValueError(
            f"pack_examples(segments_per_row={segments_per_row}): must be a positive divisor of the "
            f"number of examples ({num_examples})"
        )
    rows = num_examples // segments_per_row
    n = examples.lengths.reshape(rows, segments_per_row)
    seg_len = n + examples.output_lengths.reshape(rows, segments_per_row)
    ends = np.cumsum(seg_len, axis=-1)  # [rows, k]
    if ends[:, -1].max(initial=0) > row_length:
        raise ValueError(f"pack_examples(row_length={row_length}): a row needs {ends[:, -1].max()} tokens")
    starts = ends - seg_len
    j = np.arange(row_length, dtype=np.int32)[None, :]  # [1, T]
    slot = np.sum(j[:, :, None] >= ends[:, None, :], axis=-1)  # [rows, T]
    valid = slot < segments_per_row
    slot_c = np.minimum(slot, segments_per_row - 1)
    example = np.arange(rows, dtype=np.int32)[:, None] * segments_per_row + slot_c
    offset = j - np.take_along_axis(starts, slot_c, axis=-1)
    length = examples.lengths[example]
    in_input = offset < length
    out_index = offset - length  # index of the output predicted at this token
    in_max = examples.inputs.shape[-1]
    out_max = examples.targets.shape[-1]
    input_symbol = examples.inputs[example, np.clip(offset, 0, in_max - 1)]
    target = examples.targets[example, np.clip(out_index, 0, out_max - 1)]
    if mode == "encoder":
        output_token = np.full_like(input_symbol, EMPTY)
    else:
        # The token at offset ``n + i`` (SEP for i = 0, else output i - 1) predicts output i.
        previous = examples.targets[example, np.clip(out_index - 1, 0, out_max - 1)]
        output_token = np.where(out_index == 0, SEP, previous)
    tokens = np.where(in_input, input_symbol, output_token)
    if example_positions is None:
        positions = offset
    else:
        positions = example_positions[example, np.clip(offset, 0, example_positions.shape[1] - 1)]
    is_output = valid & ~in_input
    return Batch(
        tokens=np.where(valid, tokens, PAD).astype(np.int32),
        positions=np.where(valid.reshape(valid.shape + (1,) * (positions.ndim - 2)), positions, 0).astype(
            np.int32
        ),
        segment_ids=np.where(valid, slot + 1, 0).astype(np.int32),
        targets=np.where(is_output, target, 0).astype(np.int32),
        weights=is_output.astype(np.float32),
        example_ids=np.where(valid, example, -1).astype(np.int32),
    )


def training_lengths(rng: np.random.Generator, rows: int, max_length: int) -> np.ndarray:
    """Input lengths for ``rows`` packed rows of two examples: ``n`` uniform on ``1 … max_length`` and its
    complement ``max_length + 1 - n`` (itself uniform), so every row is filled exactly.

    Returns:
      `[2 * rows]` int32, ordered ``n_0, N + 1 - n_0, n_1, …``.

    >>> training_lengths(np.random.default_rng(0), 2, 10).reshape(2, 2).sum(-1).tolist()
    [11, 11]
    """
    n = rng.integers(1, max_length + 1, size=rows, dtype=np.int32)
    return np.stack([n, max_length + 1 - n], axis=-1).reshape(-1)


def training_batch(
    task: Task,
    rng: np.random.Generator,
    *,
    mode: str,
    rows: int,
    max_length: int,
    position_range: int | None = None,
    share: int = 1,
    one_length: bool = False,
    draws: int = 1,
    start_at_zero: bool = False,
) -> Batch:
    """Training data of one step.

    Args:
      task: the task.
      rng: numpy random generator.
      mode: ``"encoder"`` or ``"decoder"``.
      rows: rows of the batch.
      max_length: ``N``: input lengths are uniform on ``1 … N``.
      position_range: ``None`` for positions ``0, 1, …`` in each example; else randomized positions from
        ``[0, position_range)`` (`sorted_random_positions`).
      share: consecutive examples sharing one draw of randomized positions (1: a draw per example); with
        ``one_length``, ``rows`` shares one draw (the whole batch).
      one_length: one input length ``n`` (uniform on ``1 … N``) for the whole batch and one example per row,
        padded to the longest sequence (the reference's sampling), instead of two examples per row with
        lengths ``n`` and ``N + 1 - n`` (`training_lengths`, no padding).
      draws: independent draws of randomized positions (one per attention layer; `position_draws`).
      start_at_zero: randomized draws start at 0 (see `sorted_random_positions`).

    Returns:
      A `Batch` of `[rows, task.pair_length(N)]` fields (``one_length``: `[rows,
      task.sequence_length(N)]`).

    >>> b = training_batch(get_task("sort"), np.random.default_rng(0), mode="encoder", rows=4, max_length=10)
    >>> b.tokens.shape, int(b.weights.sum())
    ((4, 22), 44)
    """
    if one_length:
        n = rng.integers(1, max_length + 1, dtype=np.int32)
        lengths = np.full(rows, n, dtype=np.int32)
    else:
        lengths = training_lengths(rng, rows, max_length)
    examples = make_examples(task, rng, lengths, max_length)
    positions = None
    if position_range is not None:
        positions = position_draws(
            rng,
            examples.lengths + examples.output_lengths,
            int(task.sequence_length(max_length)),
            position_range,
            share=share,
            draws=draws,
            start_at_zero=start_at_zero,
        )
    return pack_examples(
        task,
        examples,
        mode=mode,
        segments_per_row=1 if one_length else 2,
        row_length=int(task.sequence_length(max_length)) if one_length else task.pair_length(max_length),
        example_positions=positions,
    )


# Training data travel compactly; the step widens them (`widen`).
_COMPACT = {
    "tokens": np.int8,
    "positions": np.int32,
    "segment_ids": np.int8,
    "targets": np.int8,
    "weights": np.int8,
    "example_ids": np.int32,
}


def training_chunk(
    task: Task,
    mode: str,
    *,
    seeds: tuple[int, ...],
    chunk: int,
    steps: int,
    rows: int,
    max_length: int,
    position_range: int | None,
    per_batch: bool,
    one_length: bool = False,
    draws: int = 1,
    start_at_zero: bool = False,
) -> Batch:
    """The training batches of ``steps`` consecutive steps of every seed, `[steps, seeds, rows, row_length]`
    (positions `[steps, seeds, rows, row_length, draws]` for several draws).

    Seed ``s`` draws chunk ``c`` from ``default_rng([s, c])``: its data do not depend on the other seeds, the
    learning rate, the device count or the backend. Compact dtypes keep the host-to-device copy small; the
    example ids (not needed for training) are an empty last axis.

    Args:
      task, mode: the task and format.
      seeds: the training seeds.
      chunk: index of the chunk (steps ``chunk * steps …``).
      steps: steps per chunk.
      rows: rows per step and seed.
      max_length: ``N`` of the training lengths.
      position_range: randomized positions' range, or ``None``.
      per_batch: one draw of randomized positions per step (needs ``one_length``), else per example.
      one_length: one input length per step, one example per row (`training_batch`).
      draws: draws of randomized positions per example (one per attention layer).
      start_at_zero: randomized draws start at 0 (`sorted_random_positions`).

    Raises:
      ValueError: for ``per_batch`` without ``one_length`` (a shared draw needs examples of one length).
    """
    if per_batch and not one_length:
        raise ValueError(
            "training_chunk(per_batch=True, one_length=False): a draw shared by the batch needs one length "
            "per batch"
        )
    rng_per_step = one_length  # one length per step: every step is a batch of its own
    per_seed = []
    for seed in seeds:
        rng = np.random.default_rng([seed, chunk])
        options = dict(mode=mode, max_length=max_length, position_range=position_range, draws=draws)
        if rng_per_step:
            batches = [
                training_batch(
                    task,
                    rng,
                    rows=rows,
                    share=rows if per_batch else 1,
                    one_length=True,
                    start_at_zero=start_at_zero,
                    **options,
                )
                for _ in range(steps)
            ]
            batch = Batch(*(np.concatenate(fields) for fields in zip(*batches, strict=True)))
        else:
            batch = training_batch(task, rng, rows=steps * rows, start_at_zero=start_at_zero, **options)
        per_seed.append(batch)
    fields = []
    for name in Batch._fields:
        stacked = np.stack([getattr(b, name) for b in per_seed])  # [seeds, steps * rows, T, ...]
        stacked = stacked.reshape(len(per_seed), steps, rows, *stacked.shape[2:]).swapaxes(0, 1)
        fields.append(stacked.astype(_COMPACT[name]))
    fields[-1] = fields[-1][..., :0]
    return Batch(*fields)
