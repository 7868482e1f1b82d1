"""The jax-only install: the library without flax, the published metadata, and a long description whose
links resolve off the repository (on a package index page)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter where importing flax fails, as in an environment without it.
WITHOUT_FLAX = r"""
import sys


class NoFlax:
    def find_spec(self, name, path=None, target=None):
        if name == "flax" or name.startswith("flax."):
            raise ImportError(f"No module named {name!r} (blocked)")
        return None


sys.meta_path.insert(0, NoFlax())

import jax.numpy as jnp
import numpy as np

import posenc_jax as pe
from posenc_jax import schemes

p = jnp.arange(4)
q = k = v = jnp.ones((1, 4, 2, 8))
assert pe.sinusoidal(p, 8).shape == (4, 8)
assert pe.apply_rotary(q, p, layout="split").shape == q.shape
for scheme in (
    schemes.Rotary(8, layout="split", scaling=pe.rope.YaRN(2.0, original_max_position=4)),
    schemes.ALiBi(2),
    schemes.T5Bias(2, is_causal=True, num_buckets=4, max_distance=8, table=jnp.ones((4, 2))),
):
    out = pe.attention(q, k, v, scheme=scheme, q_positions=p, k_positions=p, is_causal=True)
    assert out.shape == q.shape and bool(jnp.all(jnp.isfinite(out)))
embedded = schemes.Learned(4, 8, table=jnp.ones((4, 8))).embed(jnp.zeros((1, 4, 8)))
np.testing.assert_array_equal(embedded, np.ones((1, 4, 8)))
cache = pe.KVCache.init(batch=1, capacity=8, num_kv_heads=2, head_dim=8).append(k, v, positions=p)
assert cache.attend(q, scheme=schemes.ALiBi(2)).shape == q.shape
assert not [name for name in sys.modules if name == "flax" or name.startswith("flax.")]

for api in ("nnx", "linen"):
    try:
        __import__(f"posenc_jax.{api}")
    except ImportError as error:
        assert f"posenc_jax.{api} needs flax" in str(error), error
        assert "pip install 'posenc_jax[flax]'" in str(error), error
    else:
        raise AssertionError(f"posenc_jax.{api} imported without flax")
print("ok")
"""


def test_the_library_works_without_flax_and_the_modules_name_the_extra():
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_FLAX], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_published_metadata_needs_jax_and_numpy_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(re.split(r"[<>=!~ \[]", dep)[0] for dep in project["dependencies"]) == ["jax", "numpy"]
    extras = project["optional-dependencies"]
    assert extras["flax"] == ["flax>=0.11.0"]
    assert "experiments" not in extras  # code the wheel does not ship
    assert "posenc_jax[flax]" in extras["test"] and "posenc_jax[flax]" in extras["docs"]
    assert set(project["urls"]) >= {"Homepage", "Documentation", "Source", "Changelog"}
    assert all(url.startswith("https://github.com/posenc-jax/posenc_jax") for url in project["urls"].values())


def test_long_description_links_are_absolute():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", readme)
    targets += re.findall(r"^\[[^\]]+\]:\s*(\S+)", readme, flags=re.M)
    targets += re.findall(r"""(?:src|href)=["']([^"']+)""", readme)
    assert targets
    relative = [t for t in targets if not re.match(r"https?://|#|mailto:", t)]
    assert not relative, relative


def test_the_citation_names_the_released_version():
    import posenc_jax

    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^version: (\S+)$", citation, flags=re.M).group(1) == posenc_jax.__version__
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"version = \{([^}]+)\}", readme).group(1) == posenc_jax.__version__
