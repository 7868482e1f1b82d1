"""The implementation of posenc_jax (private): import from :mod:`posenc_jax` and its namespaces."""
