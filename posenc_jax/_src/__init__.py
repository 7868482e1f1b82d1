"""The implementation of posenc_jax; the public modules re-export from here."""
