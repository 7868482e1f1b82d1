"""The recipes users asked for (examples/recipes): porting Hugging Face / Llama / Gemma weights, packed
sequences, and DynamicNTK decoding against the full pass. Each runs its ``main`` (what ``python -m
examples.recipes.<name>`` runs) and checks what it prints."""

import numpy as np

from examples.recipes import dynamic_ntk_decoding, packed_sequences, port_hf_weights


def run(module, capsys) -> dict[str, float]:
    results = module.main()
    printed = capsys.readouterr().out
    assert all(name in printed for name in results)
    return results


def test_split_layout_with_rope_frequencies_is_hugging_face_rotate_half(capsys):
    got = run(port_hf_weights, capsys)
    assert got["llama3 frequencies vs transformers' rule (relative)"] < 1e-14
    for name in (
        "split with rope_frequencies (Llama 3.1) vs rotate_half",
        "schemes.Rotary (Llama 3.1) vs rotate_half",
        "split, base 10000 (Llama 2, Gemma) vs rotate_half",
    ):
        assert got[name] < 1e-6, name
    assert got["conversion permutation vs transformers' permute"] == 0.0
    assert got["scores: Meta weights interleaved vs converted weights split (relative)"] < 1e-6
    # the same weights with the wrong layout score differently: no error would say so
    assert got["scores: Meta weights with the split layout, unconverted (relative; wrong)"] > 0.05


def test_hugging_face_transcription_is_the_formula():
    # rotate_half of the transcription is the split pairing (i, i + d/2) turned by position * inv_freq
    x = np.zeros((1, 1, 1, 4))
    x[..., 0] = 1.0  # the first member of pair 0
    out = port_hf_weights.hf_apply_rotary_pos_emb(x, np.array([[3]]), np.array([0.5, 0.01]))
    np.testing.assert_allclose(out[0, 0, 0], [np.cos(1.5), 0.0, np.sin(1.5), 0.0], atol=1e-15)


def test_packed_segments_equal_the_segments_alone(capsys):
    for name, value in run(packed_sequences, capsys).items():
        assert value < 1e-6, name


def test_dynamic_ntk_decoding_is_the_prefix_pass_not_the_full_pass(capsys):
    got = run(dynamic_ntk_decoding, capsys)
    assert got["decoding vs full pass over 7 tokens (L > L0 = 3)"] > 1e-3  # by design, beyond the window
    assert got["decoding vs full pass over 3 tokens (L <= L0)"] < 1e-6
    assert got["decoding vs the full pass over each prefix"] < 1e-6
    assert got["decoding vs full pass, YaRN (length-independent)"] < 1e-6
