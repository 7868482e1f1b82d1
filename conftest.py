"""Test configuration: 8 host CPU devices for the sharding tests.

XLA reads ``XLA_FLAGS`` once, when JAX first initialises its backend, so the flag is set here, before any test
module imports jax.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
