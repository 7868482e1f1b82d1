"""The claims about sinusoidal encodings, checked: figures, numbers and text.

Run with ``python -m experiments.properties``.

:mod:`.claims` measures (from the library's encodings, analysed in float64), :mod:`.figures` draws,
:mod:`.ordering` reads the length-generalization result of the ordering experiments, :mod:`.report` writes
``numbers.json`` and ``properties.md``.
"""
