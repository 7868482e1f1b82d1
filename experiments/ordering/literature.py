"""The orderings the length-generalization papers report, checked against a run's paired comparisons.

Each claim of `CLAIMS` says that some schemes are ahead of others beyond the training length, in one
architecture. A run checks it where it has both schemes of a pair and a run of that mode: in every band
beyond the training lengths, the paired per-seed difference ``ahead - behind`` in per-token accuracy
(`summary.compare_pairs`), decided with Holm's correction over every comparison the check states. A
separated positive difference agrees, a separated negative one disagrees, anything else cannot separate
them; a difference between two schemes that both sit at the baseline level (chance or the
most-frequent-symbol baseline) is labelled as such and neither agrees nor disagrees.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from experiments.ordering import stats
from experiments.ordering.config import ExperimentConfig
from experiments.ordering.summary import compare_pairs

__all__ = ["Claim", "CLAIMS", "check_claims"]


@dataclasses.dataclass(frozen=True)
class Claim:
    """One ordering a paper reports.

    Attributes:
      paper: the short citation (``"Ruoss et al. 2023"``).
      citation: the full reference.
      statement: the ordering as the paper states it.
      pairs: ``(ahead, behind)`` scheme names of this experiment's registry.
      mode: the architecture it was reported for: ``"decoder"`` (causal) or ``"encoder"``; checked only in
        runs of that mode.
      band: where it was reported; ``"beyond training"``: every band past the training lengths.
      setting: what the paper trained and measured.
      paper_tasks: this experiment's tasks that are tasks of the paper (in ``mode``); other tasks are a
        different task from the paper's.
    """

    paper: str
    citation: str
    statement: str
    pairs: tuple[tuple[str, str], ...]
    mode: str
    band: str
    setting: str
    paper_tasks: tuple[str, ...] = ()


_KAZEMNEJAD = "Kazemnejad et al. 2023"
CLAIMS: tuple[Claim, ...] = (
    Claim(
        _KAZEMNEJAD,
        "A. Kazemnejad, I. Padhi, K. Natesan Ramamurthy, P. Das, S. Reddy. The Impact of Positional Encoding "
        "on Length Generalization in Transformers. NeurIPS 2023.",
        "in causal decoders, no positional encoding (NoPE) and T5's relative bias generalize beyond the "
        "training length better than ALiBi, rotary and absolute (sinusoidal, learned) encodings",
        tuple(
            (ahead, behind)
            for ahead in ("none", "t5")
            for behind in ("alibi", "rotary", "sinusoidal", "learned")
        ),
        "decoder",
        "beyond training",
        "decoder-only Transformers trained from scratch on the paper's synthetic reasoning and arithmetic "
        "tasks, at a far larger model size and training budget",
    ),
    Claim(
        "Ruoss et al. 2023",
        "A. Ruoss, G. Delétang, T. Genewein, J. Grau-Moya, R. Csordás, M. Bennani, S. Legg, J. Veness. "
        "Randomized Positional Encodings Boost Length Generalization of Transformers. ACL 2023.",
        "randomized positions generalize beyond the training length better than their base schemes",
        (
            ("randomized_rotary", "rotary"),
            ("randomized_sinusoidal", "sinusoidal"),
            ("randomized_learned", "learned"),
            ("randomized_relative", "relative"),
        ),
        "encoder",
        "beyond training",
        "encoder-only Transformers on the algorithmic tasks of Delétang et al. 2023 (5 layers, training "
        "lengths 1-40, tested to 500, far longer training)",
        ("sort", "reverse", "duplicate", "odds_first"),
    ),
    Claim(
        "Li et al. 2024",
        "S. Li, C. You, G. Guruganesh, J. Ainslie, S. Ontañón, M. Zaheer, S. Sanghai, Y. Yang, S. Kumar, "
        "S. Bhojanapalli. Functional Interpolation for Relative Positions Improves Long Context "
        "Transformers. ICLR 2024.",
        "FIRE generalizes beyond the training length better than rotary",
        (("fire", "rotary"),),
        "decoder",
        "beyond training",
        "decoder language models (perplexity on C4 beyond the training context, long-context benchmarks)",
    ),
    Claim(
        "Chi et al. 2022",
        "T.-C. Chi, T.-H. Fan, P. J. Ramadge, A. I. Rudnicky. KERPLE: Kernelized Relative Positional "
        "Embedding for Length Extrapolation. NeurIPS 2022.",
        "Kerple (logarithmic kernel) generalizes beyond the training length better than rotary",
        (("kerple", "rotary"),),
        "decoder",
        "beyond training",
        "decoder language models (perplexity on OpenWebText2, GitHub and ArXiv beyond the training length)",
    ),
    Claim(
        "Sun et al. 2022",
        "Y. Sun, L. Dong, B. Patra, S. Ma, S. Huang, A. Benhaim, V. Chaudhary, X. Song, F. Wei. A "
        "Length-Extrapolatable Transformer. arXiv:2212.10554 (ACL 2023).",
        "xPos generalizes beyond the training length better than rotary",
        (("xpos", "rotary"),),
        "decoder",
        "beyond training",
        "decoder language models (perplexity beyond the training length)",
    ),
)

_BANDS = ("beyond training",)


def _bands(config: ExperimentConfig, band: str) -> list[str]:
    """The band names of ``config`` that ``band`` covers."""
    if band not in _BANDS:
        raise ValueError(f"_bands(band={band!r}): must be one of {_BANDS}")
    return [
        name
        for name, (low, _) in stats.bands(config.train_max_length, config.test_max_length).items()
        if low > config.train_max_length
    ]


def _verdict(c: dict[str, Any]) -> str:
    """One comparison ``ahead - behind``: ``agrees``, ``disagrees``, ``cannot separate``, ``at baseline``
    or ``diverged``."""
    if c["diverged"]:
        return "diverged"
    if c["at_baseline"]:
        return "at baseline"
    if c["separated"]:
        return "agrees" if c["mean"] > 0 else "disagrees"
    return "cannot separate"


def check_claims(
    config: ExperimentConfig, rows: list[dict[str, Any]], claims: tuple[Claim, ...] = CLAIMS
) -> dict[str, Any]:
    """Every check the run can make of ``claims``, decided over one Holm family.

    Args:
      config: the run's config.
      rows: the summary's rows (`summary.summarize_groups`).
      claims: the claims to check.

    Returns:
      ``{"checks", "comparisons", "skipped"}``: ``checks`` holds one entry per claim, pair and run that has
      both schemes, ``{"claim", "ahead", "behind", "task", "mode", "learning_rate", "paper_task",
      "bands": [(band, comparison, verdict)]}`` (the comparison ``ahead - behind`` of `summary.compare_pairs`
      and its verdict, `_verdict`); ``comparisons`` all of them (the family); ``skipped`` the claims with no
      check (a scheme or the mode is not in the run).
    """
    wanted: dict[tuple[str, str, str], list[str]] = {}  # (mode, band, ahead) -> behind
    for claim in claims:
        for band in _bands(config, claim.band):
            for ahead, behind in claim.pairs:
                wanted.setdefault((claim.mode, band, ahead), []).append(behind)
    comparisons = compare_pairs(
        rows, lambda row: wanted.get((row["mode"], row["band"], row["scheme"]), ()), ("token_accuracy",)
    )
    index = {
        (c["task"], c["mode"], c["learning_rate"], c["band"], c["scheme"], c["reference"]): c
        for c in comparisons
    }
    checks, skipped = [], []
    for claim in claims:
        found = False
        for task, mode in config.runs:
            if mode != claim.mode:
                continue
            for lr in config.learning_rates:
                for ahead, behind in claim.pairs:
                    bands = [
                        (band, c, _verdict(c))
                        for band in _bands(config, claim.band)
                        if (c := index.get((task, mode, lr, band, ahead, behind))) is not None
                    ]
                    if bands:
                        found = True
                        checks.append(
                            {
                                "claim": claim,
                                "ahead": ahead,
                                "behind": behind,
                                "task": task,
                                "mode": mode,
                                "learning_rate": lr,
                                "paper_task": task in claim.paper_tasks,
                                "bands": bands,
                            }
                        )
        if not found:
            skipped.append(claim)
    return {"checks": checks, "comparisons": comparisons, "skipped": skipped}
