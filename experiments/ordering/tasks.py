"""Sequence tasks, example generation and packing into fixed-shape batches.

The tasks follow the definitions of Delétang et al. (2023) and Ruoss et al. (2023):

* ``sort`` — bucket sort over an alphabet of 5 symbols (the ordering task proper);
* ``reverse`` — reverse a binary string;
* ``duplicate`` — write a binary string twice;
* ``odds_first`` — a binary string ``x1 x2 … xn`` becomes ``x1 x3 x5 … x2 x4 …`` (1-based indices: the
  odd-indexed symbols first, then the even-indexed ones);
* ``majority`` — the control task: the most frequent of 5 symbols (ties go to the smallest symbol). Its
  answer does not depend on the order of the input, so a model without any position information can solve it.

Two formats. **Encoder**: the input symbols, then one identical ``EMPTY`` token per output position; the model
predicts every output symbol at its ``EMPTY`` token in one pass. **Decoder** (causal): the input symbols, a
``SEP`` token, then the output symbols; the prediction of output ``j`` is made at the token before it
(``SEP`` for ``j = 0``), teacher-forced at training. Both formats have ``n + m`` tokens for an input of
length ``n`` and an output of length ``m`` (the decoder never feeds the last output symbol back).

Packing: a batch row holds ``segments_per_row`` examples one after the other (block-diagonal attention via
segment ids, positions restart at 0 in each segment). At training, every row pairs an input length ``n``
with ``N + 1 - n``; lengths stay uniform on ``1 … N`` and, because every task's sequence length is linear
in ``n``, each row is filled exactly: no padding at all. Evaluation sets pair lengths the same way.

Generation runs on the host in numpy (``np.random.Generator``): the compiled programs contain no random
number generation (whose compilation is slow on CPU), and the data of a seed is the same on every backend and
device count.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

__all__ = [
    "EMPTY",
    "SEP",
    "PAD",
    "VOCAB_SIZE",
    "NUM_CLASSES",
    "MODES",
    "Task",
    "TASKS",
    "get_task",
    "Examples",
    "Batch",
    "make_examples",
    "pack_examples",
    "sorted_random_positions",
    "training_lengths",
    "training_batch",
    "pad_rows",
    "evaluation_lengths",
    "analytic_ceiling",
]

#: Largest input alphabet of any task; symbols are token ids ``0 … 4``.
MAX_ALPHABET = 5
#: The identical placeholder token at every output position of the encoder format.
EMPTY = 5
#: The separator between input and output in the decoder format.
SEP = 6
#: Padding (only where a row is not filled exactly, e.g. rows added to divide the device count).
PAD = 7
#: Size of the shared input vocabulary of all tasks (one compiled model shape for every task).
VOCAB_SIZE = 8
#: Size of the shared output space: the symbols ``0 … 4``.
NUM_CLASSES = MAX_ALPHABET
#: The two formats.
MODES = ("encoder", "decoder")


@dataclasses.dataclass(frozen=True)
class Task:
    """One sequence-to-sequence task.

    Attributes:
      name: the task's name.
      alphabet_size: number of input symbols (inputs are uniform over ``0 … alphabet_size - 1``).
      output_scale: ``a`` in the output length ``m = a * n + b`` for an input of length ``n``.
      output_offset: ``b`` in the output length.
      needs_position: whether a model must tell positions apart to solve it (the control task's single
        output depends on the input's symbol counts only).
      description: one line for reports.
    """

    name: str
    alphabet_size: int
    output_scale: int
    output_offset: int
    needs_position: bool
    description: str

    def output_length(self, n):
        """Output length for input length(s) ``n`` (int or integer array)."""
        return self.output_scale * n + self.output_offset

    def sequence_length(self, n):
        """Tokens of one example (input plus output positions) for input length(s) ``n``."""
        return n + self.output_length(n)

    def pair_length(self, max_length: int) -> int:
        """Tokens of a row holding two examples of input lengths ``n`` and ``max_length + 1 - n`` (the same
        for every ``n``, since sequence lengths are linear in ``n``)."""
        return int(self.sequence_length(1) + self.sequence_length(max_length))

    @property
    def chance(self) -> float:
        """Per-token accuracy of a uniform random guess over the task's output symbols."""
        return 1.0 / self.alphabet_size

    def targets(self, inputs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The outputs of a batch of inputs.

        Args:
          inputs: `[examples, max_length]` int symbols; entries at ``j >= lengths`` are ignored.
          lengths: `[examples]` int input lengths, ``1 … max_length``.

        Returns:
          `[examples, output_length(max_length)]` int32; entries at ``j >= output_length(lengths)`` are 0.

        >>> get_task("odds_first").targets(np.array([[1, 2, 3, 4, 5]]), np.array([5])).tolist()
        [[1, 3, 5, 2, 4]]
        """
        inputs = np.asarray(inputs)
        max_length = inputs.shape[-1]
        out_max = self.output_length(max_length)
        j = np.arange(out_max)[None, :]
        n = np.asarray(lengths)[:, None]
        if self.name == "sort":
            keyed = np.where(np.arange(max_length)[None, :] < n, inputs, MAX_ALPHABET)
            out = np.sort(keyed, axis=-1)
        elif self.name == "reverse":
            out = _gather(inputs, np.clip(n - 1 - j, 0, max_length - 1))
        elif self.name == "duplicate":
            out = _gather(inputs, j % n)
        elif self.name == "odds_first":
            half = (n + 1) // 2
            source = np.where(j < half, 2 * j, 2 * (j - half) + 1)
            out = _gather(inputs, np.clip(source, 0, max_length - 1))
        elif self.name == "majority":
            valid = np.arange(max_length)[None, :] < n
            counts = ((inputs[..., None] == np.arange(self.alphabet_size)) & valid[..., None]).sum(1)
            out = np.argmax(counts, axis=-1)[:, None]  # argmax returns the first maximum
        else:  # pragma: no cover - TASKS holds only the names above
            raise AssertionError(self.name)
        out = out[:, :out_max].astype(np.int32)
        return np.where(j < self.output_length(n), out, 0).astype(np.int32)


def _gather(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.take_along_axis(values, np.broadcast_to(index, (values.shape[0], index.shape[-1])), axis=-1)


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("sort", 5, 1, 0, True, "bucket sort of 5 symbols"),
        Task("reverse", 2, 1, 0, True, "reverse a binary string"),
        Task("duplicate", 2, 2, 0, True, "write a binary string twice"),
        Task("odds_first", 2, 1, 0, True, "odd-indexed symbols first, then even-indexed"),
        Task("majority", 5, 0, 1, False, "most frequent of 5 symbols (control: order-free)"),
    )
}


def get_task(name: str) -> Task:
    """The task called ``name``.

    Raises:
      ValueError: if ``name`` is not one of ``TASKS``.

    >>> get_task("sort").output_length(7)
    7
    """
    if name not in TASKS:
        raise ValueError(f"get_task(name={name!r}): unknown task; choose one of {sorted(TASKS)}")
    return TASKS[name]


class Examples(NamedTuple):
    """Examples before packing (numpy arrays).

    Attributes:
      inputs: `[examples, max_length]` int32 symbols (0 beyond each length).
      lengths: `[examples]` int32 input lengths.
      targets: `[examples, max_output]` int32 outputs (0 beyond each output length).
      output_lengths: `[examples]` int32.
    """

    inputs: np.ndarray
    lengths: np.ndarray
    targets: np.ndarray
    output_lengths: np.ndarray


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


def make_examples(task: Task, rng: np.random.Generator, lengths: np.ndarray, max_length: int) -> Examples:
    """Random examples of ``task`` with the given input lengths.

    Args:
      task: the task.
      rng: numpy random generator.
      lengths: `[examples]` int input lengths in ``1 … max_length``.
      max_length: width of the ``inputs`` array.

    Returns:
      The `Examples`.

    Raises:
      ValueError: for lengths outside ``1 … max_length``.

    >>> ex = make_examples(get_task("reverse"), np.random.default_rng(0), np.array([3]), 4)
    >>> bool((ex.targets[0, :3] == ex.inputs[0, :3][::-1]).all())
    True
    """
    lengths = np.asarray(lengths, np.int32)
    if lengths.ndim != 1 or lengths.size and (lengths.min() < 1 or lengths.max() > max_length):
        raise ValueError(
            f"make_examples(lengths={lengths!r}): lengths must be a 1-D array of values in 1 … {max_length}"
        )
    symbols = rng.integers(0, task.alphabet_size, size=(lengths.shape[0], max_length), dtype=np.int32)
    symbols = np.where(np.arange(max_length) < lengths[:, None], symbols, 0).astype(np.int32)
    return Examples(
        symbols, lengths, task.targets(symbols, lengths), task.output_length(lengths).astype(np.int32)
    )


def sorted_random_positions(
    rng: np.random.Generator, lengths: np.ndarray, width: int, max_position: int
) -> np.ndarray:
    """Per example, a sorted uniformly random subset of ``[0, max_position)`` of size ``lengths[e]``.

    The randomized positional encodings of Ruoss et al. (2023) for a batch whose examples have different
    lengths: each example gets an independent draw of exactly as many distinct positions as it has tokens
    (the package's ``randomized_positions`` draws one fixed length for the whole batch).

    Args:
      rng: numpy random generator.
      lengths: `[examples]` int number of positions wanted per example, each ``≤ width``.
      width: number of columns of the result (``≤ max_position``).
      max_position: positions are drawn from ``0 … max_position - 1``.

    Returns:
      `[examples, width]` int32; row ``e`` holds its ``lengths[e]`` positions in increasing order, then
      ``max_position`` (a filler that is never a valid position).

    Raises:
      ValueError: if ``width > max_position`` or a length exceeds ``width``.

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
    # The `lengths[e]` smallest of max_position i.i.d. uniform scores pick a uniformly random subset.
    scores = rng.random((lengths.shape[0], max_position))
    rank = np.argsort(np.argsort(scores, axis=-1), axis=-1)
    index = np.arange(max_position)
    ordered = np.sort(np.where(rank < lengths[:, None], index, max_position + index), axis=-1)[:, :width]
    return np.where(np.arange(width) < lengths[:, None], ordered, max_position).astype(np.int32)


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
        (e.g. from `sorted_random_positions`); default ``0, 1, …`` within each example.

    Returns:
      The `Batch` (`[rows, row_length]` fields).

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
        positions = example_positions[example, np.clip(offset, 0, example_positions.shape[-1] - 1)]
    is_output = valid & ~in_input
    return Batch(
        tokens=np.where(valid, tokens, PAD).astype(np.int32),
        positions=np.where(valid, positions, 0).astype(np.int32),
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
    max_positions: int | None = None,
) -> Batch:
    """A training batch: ``rows`` rows of two examples with lengths from `training_lengths`.

    Args:
      task: the task.
      rng: numpy random generator.
      mode: ``"encoder"`` or ``"decoder"``.
      rows: rows of the batch (``2 * rows`` examples).
      max_length: ``N``: input lengths are uniform on ``1 … N``.
      max_positions: ``None`` for positions ``0, 1, …`` in each example; else randomized positions, a
        sorted random subset of ``[0, max_positions)`` per example.

    Returns:
      A `Batch` of `[rows, task.pair_length(N)]` fields (no padding).

    >>> b = training_batch(get_task("sort"), np.random.default_rng(0), mode="encoder", rows=4, max_length=10)
    >>> b.tokens.shape, int(b.weights.sum())
    ((4, 22), 44)
    """
    lengths = training_lengths(rng, rows, max_length)
    examples = make_examples(task, rng, lengths, max_length)
    positions = None
    if max_positions is not None:
        positions = sorted_random_positions(
            rng,
            examples.lengths + examples.output_lengths,
            int(task.sequence_length(max_length)),
            max_positions,
        )
    return pack_examples(
        task,
        examples,
        mode=mode,
        segments_per_row=2,
        row_length=task.pair_length(max_length),
        example_positions=positions,
    )


def evaluation_lengths(max_length: int, per_length: int, *, paired: bool) -> np.ndarray:
    """Input lengths of an evaluation set: ``per_length`` examples of every length ``1 … max_length``.

    Args:
      max_length: longest input length.
      per_length: examples per length (even when ``paired`` and ``max_length`` is odd).
      paired: order the lengths so that consecutive pairs are ``(n, max_length + 1 - n)`` (two segments
        per row, every row filled exactly); else in increasing order.

    Returns:
      `[max_length * per_length]` int32 numpy array.

    Raises:
      ValueError: if a paired set with odd ``max_length`` has an odd ``per_length``.

    >>> evaluation_lengths(3, 2, paired=True).tolist()
    [1, 3, 1, 3, 2, 2]
    """
    if not paired:
        return np.repeat(np.arange(1, max_length + 1, dtype=np.int32), per_length)
    if max_length % 2 and per_length % 2:
        raise ValueError(
            f"evaluation_lengths(per_length={per_length}): must be even when max_length "
            f"({max_length}) is odd and the set is paired"
        )
    pairs = []
    for n in range(1, max_length // 2 + 1):
        pairs += [(n, max_length + 1 - n)] * per_length
    if max_length % 2:
        middle = (max_length + 1) // 2
        pairs += [(middle, middle)] * (per_length // 2)
    return np.asarray(pairs, dtype=np.int32).reshape(-1)


def analytic_ceiling(examples: Examples) -> np.ndarray:
    """Best per-token accuracy of an encoder that sees no position information, per example.

    Without positions every ``EMPTY`` token of an example gets the same representation, so all of its
    outputs are the same symbol; the best choice is the most frequent target symbol.

    Returns:
      `[examples]` float64: ``max_c count(target == c) / output_length``.

    >>> t = np.array([[0, 0, 1, 2]])
    >>> analytic_ceiling(Examples(t, np.array([4]), t, np.array([4]))).tolist()
    [0.5]
    """
    out_max = examples.targets.shape[-1]
    valid = np.arange(out_max)[None, :] < examples.output_lengths[:, None]
    counts = ((examples.targets[..., None] == np.arange(NUM_CLASSES)) & valid[..., None]).sum(1)
    return counts.max(-1) / examples.output_lengths


def pad_rows(batch: Batch, multiple: int) -> Batch:
    """Appends empty rows (padding everywhere, weight 0) so that the row count divides ``multiple``.

    >>> b = training_batch(get_task("sort"), np.random.default_rng(0), mode="encoder", rows=3, max_length=4)
    >>> pad_rows(b, 4).tokens.shape
    (4, 10)
    """
    rows = batch.tokens.shape[0]
    extra = -rows % multiple
    if not extra:
        return batch
    fill = {"tokens": PAD, "example_ids": -1}
    return Batch(
        *(
            np.concatenate([a, np.full((extra,) + a.shape[1:], fill.get(name, 0), a.dtype)])
            for name, a in zip(Batch._fields, batch, strict=True)
        )
    )
