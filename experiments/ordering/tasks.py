"""The sequence tasks of the ordering experiment: one definition each, with its target function.

Four tasks follow the definitions of Delétang et al. (2023), which Ruoss et al. (2023) reuse; the fifth is a
control added here:

* ``sort`` — bucket sort over an alphabet of 5 symbols (the ordering task proper; ``bucket_sort``);
* ``reverse`` — reverse a binary string (``reverse_string``);
* ``duplicate`` — write a binary string twice (``duplicate_string``);
* ``odds_first`` — a binary string ``x1 x2 … xn`` becomes ``x1 x3 x5 … x2 x4 …`` (1-based indices: the
  odd-indexed symbols first, then the even-indexed ones);
* ``majority`` — the control task (not a task of either paper): the most frequent of 5 symbols (ties go to
  the smallest symbol). Its answer does not depend on the order of the input, so a model without any
  position information can solve it.

In the causal decoder no task needs explicit positions: each token attends only to its prefix, so the mask
itself tells a token how many came before it (Kazemnejad et al. 2023); whether explicit positions help or
hurt there is measured, not assumed.

Each task is one `Task` in `TASKS` with its own target function and, per format (encoder or decoder), whether
a model needs positions to solve it. Formats, packing and sampling: :mod:`experiments.ordering.data`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
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
    "make_examples",
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


def _sort(inputs: np.ndarray, n: np.ndarray, out_max: int) -> np.ndarray:
    keyed = np.where(np.arange(inputs.shape[-1])[None, :] < n, inputs, MAX_ALPHABET)
    return np.sort(keyed, axis=-1)


def _reverse(inputs: np.ndarray, n: np.ndarray, out_max: int) -> np.ndarray:
    j = np.arange(out_max)[None, :]
    return _gather(inputs, np.clip(n - 1 - j, 0, inputs.shape[-1] - 1))


def _duplicate(inputs: np.ndarray, n: np.ndarray, out_max: int) -> np.ndarray:
    return _gather(inputs, np.arange(out_max)[None, :] % n)


def _odds_first(inputs: np.ndarray, n: np.ndarray, out_max: int) -> np.ndarray:
    j = np.arange(out_max)[None, :]
    half = (n + 1) // 2
    source = np.where(j < half, 2 * j, 2 * (j - half) + 1)
    return _gather(inputs, np.clip(source, 0, inputs.shape[-1] - 1))


def _majority(inputs: np.ndarray, n: np.ndarray, out_max: int) -> np.ndarray:
    valid = np.arange(inputs.shape[-1])[None, :] < n
    counts = ((inputs[..., None] == np.arange(MAX_ALPHABET)) & valid[..., None]).sum(1)
    return np.argmax(counts, axis=-1)[:, None]  # argmax returns the first maximum: ties go to the smallest


def _gather(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.take_along_axis(values, np.broadcast_to(index, (values.shape[0], index.shape[-1])), axis=-1)


@dataclasses.dataclass(frozen=True)
class Task:
    """One sequence-to-sequence task, defined in one place: adding a task is one `Task(...)` in `TASKS`.

    Attributes:
      name: the task's name.
      alphabet_size: number of input symbols (inputs are uniform over ``0 … alphabet_size - 1``).
      output_scale: ``a`` in the output length ``m = a * n + b`` for an input of length ``n``.
      output_offset: ``b`` in the output length.
      target_fn: ``(inputs [examples, max_length], lengths [examples, 1], out_max) -> outputs`` with at least
        ``out_max`` columns (entries beyond each example's output length are ignored).
      needs_position: per mode (``"encoder"``, ``"decoder"``), whether a model must tell positions apart to
        solve the task.
      why: per mode, one sentence saying why positions are or are not needed (for reports).
      description: one line for reports.
      source: where the task comes from (for reports).
    """

    name: str
    alphabet_size: int
    output_scale: int
    output_offset: int
    target_fn: Callable[[np.ndarray, np.ndarray, int], np.ndarray]
    needs_position: dict[str, bool]
    why: dict[str, str]
    description: str
    source: str = ""

    def __post_init__(self):
        for field in ("needs_position", "why"):
            if set(getattr(self, field)) != set(MODES):
                raise ValueError(f"Task(name={self.name!r}, {field}=…): one entry per mode {MODES} is needed")

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
        out_max = int(self.output_length(inputs.shape[-1]))
        n = np.asarray(lengths)[:, None]
        out = self.target_fn(inputs, n, out_max)[:, :out_max]
        j = np.arange(out_max)[None, :]
        return np.where(j < self.output_length(n), out, 0).astype(np.int32)


_COUNTS = "the output depends only on how often each symbol occurs, not where"
_WHERE = "which input symbol goes to an output depends on its position"
_CAUSAL = (
    "which input symbol comes next depends on its position, but the causal mask already carries order: each "
    "token sees only its prefix and can count it (Kazemnejad et al. 2023)"
)
_DELETANG = "Delétang et al. (2023), `{}`"

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "sort",
            5,
            1,
            0,
            _sort,
            {"encoder": True, "decoder": False},
            {
                "encoder": "every output token is the same EMPTY token: only its position says which rank it "
                "must produce",
                "decoder": "counting suffices: the next output is the smallest symbol emitted fewer times so "
                "far than it occurs in the input",
            },
            "bucket sort of 5 symbols",
            _DELETANG.format("bucket_sort"),
        ),
        Task(
            "reverse",
            2,
            1,
            0,
            _reverse,
            {"encoder": True, "decoder": False},
            {"encoder": _WHERE, "decoder": _CAUSAL},
            "reverse a binary string",
            _DELETANG.format("reverse_string"),
        ),
        Task(
            "duplicate",
            2,
            2,
            0,
            _duplicate,
            {"encoder": True, "decoder": False},
            {"encoder": _WHERE, "decoder": _CAUSAL},
            "write a binary string twice",
            _DELETANG.format("duplicate_string"),
        ),
        Task(
            "odds_first",
            2,
            1,
            0,
            _odds_first,
            {"encoder": True, "decoder": False},
            {"encoder": _WHERE, "decoder": _CAUSAL},
            "odd-indexed symbols first, then even-indexed",
            _DELETANG.format("odds_first"),
        ),
        Task(
            "majority",
            5,
            0,
            1,
            _majority,
            {"encoder": False, "decoder": False},
            {"encoder": _COUNTS, "decoder": _COUNTS},
            "most frequent of 5 symbols (control: order-free)",
            "a control added here (not a task of Delétang et al. 2023 or Ruoss et al. 2023)",
        ),
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
