"""Benchmark sections run end to end at small shapes and compare like with like."""


def test_literature_section_compares_each_term_with_its_materialized_formula():
    from experiments.bench.literature import run

    section = run(quick=True, terms=("cope", "xpos"))
    for term in ("cope", "xpos"):
        result = section[term]
        assert result["max_abs_difference"] <= 1e-5 * result["max_abs_value"] + 1e-6, term
        assert result["ratio"] > 0 and result["cpu_ratio"] > 0
