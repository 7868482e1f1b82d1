"""Tasks, example generation, packing and randomized positions of the ordering experiment."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from experiments.ordering import baselines, data, evaluate, tasks


def _reference_outputs(name: str, x: list[int]) -> list[int]:
    """The tasks' definitions written out with Python lists."""
    if name == "sort":
        return sorted(x)
    if name == "reverse":
        return x[::-1]
    if name == "duplicate":
        return x + x
    if name == "odds_first":  # 1-based odd indices first: x1 x3 x5 … then x2 x4 …
        return x[0::2] + x[1::2]
    if name == "majority":
        counts = collections.Counter(x)
        best = max(counts.values())
        return [min(s for s, c in counts.items() if c == best)]
    raise AssertionError(name)


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_targets_match_the_definitions(name):
    task = tasks.get_task(name)
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 13, size=200)
    examples = data.make_examples(task, rng, lengths, 12)
    assert examples.inputs.shape == (200, 12)
    assert examples.targets.shape == (200, task.output_length(12))
    for e in range(200):
        n = int(lengths[e])
        x = examples.inputs[e, :n].tolist()
        assert set(x) <= set(range(task.alphabet_size))
        assert not examples.inputs[e, n:].any()
        expected = _reference_outputs(name, x)
        m = int(examples.output_lengths[e])
        assert m == len(expected) == task.output_length(n)
        assert examples.targets[e, :m].tolist() == expected
        assert not examples.targets[e, m:].any()


def test_only_the_control_task_is_solvable_without_positions():
    rng = np.random.default_rng(1)
    for name, task in tasks.TASKS.items():
        ex = data.make_examples(task, rng, np.full(300, 9), 9)
        shuffled = rng.permuted(ex.inputs, axis=1)
        order_matters = (task.targets(shuffled, ex.lengths) != ex.targets).any(axis=1).mean()
        # Without positions an encoder can at best reach the ceiling (all outputs one symbol).
        ceiling = baselines.analytic_ceiling(ex).mean()
        if name in ("reverse", "duplicate", "odds_first"):
            assert order_matters > 0.5, name
        if name == "sort":  # order-free input, but its outputs differ by position
            assert order_matters == 0.0 and ceiling < 0.6
        if task.needs_position["encoder"]:
            assert ceiling < 0.8, name
        else:
            assert order_matters == 0.0 and ceiling == 1.0, name


@pytest.mark.parametrize(
    ("name", "inputs", "outputs"),
    [
        ("sort", [3, 0, 4, 0, 2], [0, 0, 2, 3, 4]),
        ("reverse", [1, 1, 0, 1], [1, 0, 1, 1]),
        ("duplicate", [0, 1, 1], [0, 1, 1, 0, 1, 1]),
        ("odds_first", [1, 0, 0, 1, 1], [1, 0, 1, 0, 1]),
        ("odds_first", [0, 1], [0, 1]),
        ("majority", [2, 4, 4, 2, 1], [2]),  # tie between 2 and 4: the smaller
        ("majority", [3], [3]),
    ],
)
def test_targets_on_hand_examples(name, inputs, outputs):
    task = tasks.get_task(name)
    padded = np.zeros((1, 8), np.int32)
    padded[0, : len(inputs)] = inputs
    targets = task.targets(padded, np.array([len(inputs)]))
    assert targets.shape == (1, task.output_length(8))
    assert targets[0, : len(outputs)].tolist() == outputs
    assert not targets[0, len(outputs) :].any()


def test_each_task_is_one_definition_with_positions_needed_per_mode():
    assert {name: t.needs_position for name, t in tasks.TASKS.items()} == {
        "sort": {"encoder": True, "decoder": False},
        "reverse": {"encoder": True, "decoder": False},
        "duplicate": {"encoder": True, "decoder": False},
        "odds_first": {"encoder": True, "decoder": False},
        "majority": {"encoder": False, "decoder": False},
    }
    # A causal decoder's mask carries order; the majority control is not one of the papers' tasks.
    assert all("Kazemnejad" in tasks.get_task(t).why["decoder"] for t in ("reverse", "duplicate", "odds_first"))
    assert "not a task of Delétang" in tasks.get_task("majority").source
    assert all(
        "Delétang" in t.source and "not" not in t.source for n, t in tasks.TASKS.items() if n != "majority"
    )
    assert all(set(t.why) == set(tasks.MODES) for t in tasks.TASKS.values())
    # Adding a task is one definition: its own target function, no dispatch on the name.
    first = tasks.Task(
        "first",
        2,
        0,
        1,
        lambda x, n, m: x[:, :1],
        {"encoder": True, "decoder": True},
        {"encoder": "", "decoder": ""},
        "the first symbol",
    )
    assert first.targets(np.array([[1, 0, 0], [0, 1, 1]]), np.array([3, 2])).tolist() == [[1], [0]]
    with pytest.raises(ValueError, match=r"Task\(name='bad', needs_position=…\): one entry per mode"):
        tasks.Task("bad", 2, 1, 0, lambda x, n, m: x, {"encoder": True}, {"encoder": "", "decoder": ""}, "")


def test_sort_in_a_causal_decoder_needs_counting_only():
    """The next output of sort is the smallest symbol emitted fewer times so far than it occurs in the input:
    a rule that reads symbol counts only, never a position (so `needs_position["decoder"]` is False)."""
    task = tasks.get_task("sort")
    rng = np.random.default_rng(7)
    ex = data.make_examples(task, rng, rng.integers(1, 13, size=300), 12)
    for e in range(300):
        n = int(ex.lengths[e])
        counts = collections.Counter(ex.inputs[e, :n].tolist())  # order-free
        emitted: collections.Counter = collections.Counter()
        for j in range(n):
            nxt = min(s for s in range(5) if emitted[s] < counts[s])
            assert nxt == ex.targets[e, j]
            emitted[nxt] += 1
    # Reverse in a decoder cannot be done from counts: two inputs with equal counts, different outputs.
    rev = tasks.get_task("reverse")
    assert rev.targets(np.array([[0, 1], [1, 0]]), np.array([2, 2])).tolist() == [[1, 0], [0, 1]]


@pytest.mark.parametrize("mode", tasks.MODES)
@pytest.mark.parametrize("name", ["sort", "duplicate", "majority"])
def test_packing_lays_out_each_example(mode, name):
    task = tasks.get_task(name)
    rng = np.random.default_rng(2)
    lengths = data.training_lengths(rng, 16, 7)
    ex = data.make_examples(task, rng, lengths, 7)
    row_length = task.pair_length(7)
    batch = data.pack_examples(task, ex, mode=mode, segments_per_row=2, row_length=row_length)
    assert batch.tokens.shape == (16, row_length)
    assert (batch.segment_ids > 0).all()  # complementary lengths fill every row exactly
    for r in range(16):
        start = 0
        for s in range(2):
            e = 2 * r + s
            n, m = int(ex.lengths[e]), int(ex.output_lengths[e])
            seg = slice(start, start + n + m)
            assert (batch.segment_ids[r, seg] == s + 1).all()
            assert (batch.example_ids[r, seg] == e).all()
            assert batch.positions[r, seg].tolist() == list(range(n + m))
            assert batch.tokens[r, start : start + n].tolist() == ex.inputs[e, :n].tolist()
            outputs = batch.tokens[r, start + n : start + n + m].tolist()
            if mode == "encoder":
                assert outputs == [tasks.EMPTY] * m
            else:
                assert outputs == [tasks.SEP] + ex.targets[e, : m - 1].tolist()
            assert batch.weights[r, seg].tolist() == [0.0] * n + [1.0] * m
            assert batch.targets[r, start + n : start + n + m].tolist() == ex.targets[e, :m].tolist()
            start += n + m


def test_packing_with_explicit_positions_and_padding():
    task = tasks.get_task("reverse")
    rng = np.random.default_rng(3)
    ex = data.make_examples(task, rng, np.array([2, 1, 3]), 3)
    positions = np.arange(3 * 6).reshape(3, 6) * 10
    batch = data.pack_examples(
        task, ex, mode="encoder", segments_per_row=1, row_length=7, example_positions=positions
    )
    assert batch.positions[1].tolist() == [60, 70, 0, 0, 0, 0, 0]
    assert batch.segment_ids[1].tolist() == [1, 1, 0, 0, 0, 0, 0]
    assert batch.tokens[1, 2:].tolist() == [tasks.PAD] * 5
    assert batch.example_ids[1, 2:].tolist() == [-1] * 5
    padded = evaluate.pad_rows(batch, 8)
    assert padded.tokens.shape == (8, 7)
    assert (padded.weights[3:] == 0).all() and (padded.example_ids[3:] == -1).all()
    assert (padded.segment_ids[3:] == 0).all()


def test_training_lengths_are_uniform_and_complementary():
    lengths = data.training_lengths(np.random.default_rng(4), 20_000, 10).reshape(-1, 2)
    assert (lengths.sum(1) == 11).all()
    counts = np.bincount(lengths[:, 0], minlength=11)[1:]
    assert counts.min() > 1800 and counts.max() < 2200  # 2000 expected per length


def test_sorted_random_positions_are_uniform_subsets_per_example():
    rng = np.random.default_rng(5)
    lengths = np.full(4000, 6)
    lengths[::2] = 3
    p = data.sorted_random_positions(rng, lengths, 8, 20)
    for row, n in zip(p[:50], lengths[:50], strict=True):
        chosen = row[:n]
        assert (np.diff(chosen) > 0).all() and chosen.min() >= 0 and chosen.max() < 20
        assert (row[n:] == 20).all()
    six = p[1::2, :6]
    # Every position is included with probability 6/20; a fresh draw per example.
    inclusion = np.bincount(six.reshape(-1), minlength=20) / six.shape[0]
    np.testing.assert_allclose(inclusion, 6 / 20, atol=0.03)
    assert len({tuple(r) for r in six[:200]}) > 190
    # The smallest of 6 of 20: P(min >= k) = C(20-k, 6) / C(20, 6).
    from math import comb

    expected_mean_min = sum(comb(20 - k, 6) / comb(20, 6) for k in range(1, 20))
    assert abs(six[:, 0].mean() - expected_mean_min) < 0.15


def test_randomized_positions_drawn_once_per_batch_have_exactly_the_sequence_length():
    rng = np.random.default_rng(8)
    lengths = np.array([3, 3, 3, 6, 6, 6])
    p = data.sorted_random_positions(rng, lengths, 6, 2048, share=3)
    assert p[0].tolist() == p[1].tolist() == p[2].tolist() and p[3].tolist() == p[4].tolist()
    assert (np.diff(p[0, :3]) > 0).all() and (p[0, 3:] == 2048).all()
    assert (np.diff(p[3]) > 0).all() and p[3].max() < 2048
    with pytest.raises(ValueError, match=r"sorted_random_positions\(share=3\): the examples sharing a draw"):
        data.sorted_random_positions(rng, np.array([3, 6, 2, 6, 5, 1]), 6, 2048, share=3)
    # The randomized relative map: 0, then n - 1 sorted draws from [1, max_position).
    zero = data.sorted_random_positions(rng, np.array([1, 5] * 200), 5, 7, start_at_zero=True)
    assert (zero[:, 0] == 0).all() and (zero[0, 1:] == 7).all() and (zero[1::2, 1:] >= 1).all()
    assert (np.diff(zero[1::2], axis=-1) > 0).all() and zero[1::2].max() == 6
    # One length per step: every example of a step shares one draw of its exact length, per layer.
    task = tasks.get_task("sort")
    chunk = data.training_chunk(
        task,
        "encoder",
        seeds=(0,),
        chunk=0,
        steps=6,
        rows=4,
        max_length=5,
        position_range=2048,
        per_batch=True,
        one_length=True,
        draws=2,
    )
    assert chunk.positions.shape == (6, 1, 4, 10, 2) and chunk.tokens.shape == (6, 1, 4, 10)
    for step in range(6):
        seg = chunk.segment_ids[step, 0]
        assert (seg == seg[:1]).all()  # one length per step, one example per row
        positions = chunk.positions[step, 0]
        assert (positions == positions[:1]).all()
        valid = positions[0][seg[0] > 0]  # [tokens, layers]
        assert (np.diff(valid, axis=0) > 0).all() and not np.array_equal(valid[:, 0], valid[:, 1])
        assert (positions[0][seg[0] == 0] == 0).all()
    with pytest.raises(ValueError, match=r"training_chunk\(per_batch=True, one_length=False\)"):
        data.training_chunk(
            task,
            "encoder",
            seeds=(0,),
            chunk=0,
            steps=1,
            rows=4,
            max_length=5,
            position_range=64,
            per_batch=True,
        )


@pytest.mark.parametrize("n", [1, 20, 41, 200])
def test_mean_gap_of_randomized_positions_is_the_references(n):
    """The reference draws exactly n sorted positions from [0, L): the mean gap (counting the one before the
    first position) is (L + 1) / (n + 1), i.e. L / (n + 1) up to 1 / (n + 1). Drawn once per batch: one
    draw per 128 examples."""
    draws = 4000 // n + 200
    p = data.sorted_random_positions(np.random.default_rng(n), np.full(draws * 128, n), n, 2048, share=128)
    p = p[::128]
    assert (p[1:] != p[:-1]).any(axis=1).mean() > 0.99  # a fresh draw per batch
    gaps = np.diff(np.concatenate([np.full((draws, 1), -1), p], axis=1), axis=1)
    np.testing.assert_allclose(gaps.mean(), 2048 / (n + 1), rtol=0.04)


def test_mean_gap_of_training_and_evaluation_positions_of_sort():
    """In the pipeline (sort: 2n tokens for input length n) with draws per batch: the mean gap of every
    training step and every evaluation sub-batch is L / (2n + 1) of its own length, not a shared draw's."""
    task = tasks.get_task("sort")
    chunk = data.training_chunk(
        task,
        "encoder",
        seeds=(0,),
        chunk=0,
        steps=400,
        rows=2,
        max_length=41,
        position_range=2048,
        per_batch=True,
        one_length=True,
    )
    ratios = []
    for step in range(400):
        tokens = int((chunk.segment_ids[step, 0, 0] > 0).sum())
        last = chunk.positions[step, 0, 0, tokens - 1]
        ratios.append((last + 1) / tokens / (2048 / (tokens + 1)))
    assert abs(np.mean(ratios) - 1) < 0.04
    from ordering_tiny import tiny_config

    from experiments.ordering import evaluate, train

    config = tiny_config(
        runs=(("sort", "encoder"),),
        train_max_length=4,
        test_max_length=41,
        test_per_length=64,
        position_draw="batch",
        length_sampling="one_per_batch",
        evaluation_sub_batch=8,
    )
    test = evaluate.evaluation_sets(config, task, "encoder", True, train.make_mesh())[1]
    positions, segments = np.asarray(test.batch.positions), np.asarray(test.batch.segment_ids)
    for n in (1, 20, 41):
        rows = np.flatnonzero(test.examples.lengths == n)
        assert len(rows) == 64
        block = positions[rows][:, : 2 * n]
        assert (segments[rows][:, : 2 * n] == 1).all()
        assert all((block[i] == block[i - i % 8]).all() for i in range(64))  # one draw per sub-batch of 8
        assert len({tuple(r) for r in block[::8]}) == 8  # a fresh draw for every sub-batch
        gap = ((block[::8, -1] + 1) / (2 * n)).mean()
        assert abs(gap / (2048 / (2 * n + 1)) - 1) < 0.25, (n, gap)


def test_training_batch_randomized_positions_fill_the_range():
    task = tasks.get_task("sort")
    batch = data.training_batch(
        task, np.random.default_rng(6), mode="encoder", rows=64, max_length=5, position_range=40
    )
    assert batch.positions.max() >= 30  # positions far beyond the training lengths are seen
    for r in range(64):
        for s in (1, 2):
            seg = batch.positions[r, batch.segment_ids[r] == s]
            assert (np.diff(seg) > 0).all() and seg.max() < 40


def test_evaluation_lengths():
    paired = evaluate.evaluation_lengths(5, 4, paired=True)
    assert np.bincount(paired, minlength=6)[1:].tolist() == [4] * 5
    assert (paired.reshape(-1, 2).sum(1) == 6).all()
    assert evaluate.evaluation_lengths(3, 2, paired=False).tolist() == [1, 1, 2, 2, 3, 3]


def test_analytic_ceiling():
    targets = np.array([[1, 1, 0, 2], [3, 0, 0, 0], [4, 4, 4, 4]])
    ex = data.Examples(targets, np.array([4, 1, 3]), targets, np.array([4, 1, 3]))
    np.testing.assert_allclose(baselines.analytic_ceiling(ex), [0.5, 1.0, 1.0])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tasks.get_task("count"), r"get_task\(name='count'\): unknown task"),
        (
            lambda: data.make_examples(tasks.TASKS["sort"], np.random.default_rng(0), np.array([0]), 4),
            r"make_examples\(lengths=.*\): lengths must be a 1-D array of values in 1 … 4",
        ),
        (
            lambda: data.pack_examples(
                tasks.TASKS["sort"], _examples(), mode="seq2seq", segments_per_row=1, row_length=8
            ),
            r"pack_examples\(mode='seq2seq'\): mode must be one of",
        ),
        (
            lambda: data.pack_examples(
                tasks.TASKS["sort"], _examples(), mode="encoder", segments_per_row=3, row_length=8
            ),
            r"pack_examples\(segments_per_row=3\): must be a positive divisor",
        ),
        (
            lambda: data.pack_examples(
                tasks.TASKS["sort"], _examples(), mode="encoder", segments_per_row=2, row_length=5
            ),
            r"pack_examples\(row_length=5\): a row needs 6 tokens",
        ),
        (
            lambda: data.sorted_random_positions(np.random.default_rng(0), np.array([2]), 8, 4),
            r"sorted_random_positions\(width=8, max_position=4\): width must not exceed max_position",
        ),
        (
            lambda: data.sorted_random_positions(np.random.default_rng(0), np.array([5]), 4, 8),
            r"sorted_random_positions\(lengths max=5, width=4\)",
        ),
        (
            lambda: evaluate.evaluation_lengths(5, 3, paired=True),
            r"evaluation_lengths\(per_length=3\): must be even",
        ),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _examples():
    return data.make_examples(tasks.TASKS["sort"], np.random.default_rng(0), np.array([1, 2]), 2)
