"""Recipes: the positional configurations of production models, built from posenc_jax's schemes."""
