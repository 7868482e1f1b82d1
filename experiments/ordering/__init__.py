"""Sequence-ordering experiments comparing positional encodings (run ``python -m experiments.ordering``)."""
