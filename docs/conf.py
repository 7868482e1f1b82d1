"""Sphinx configuration: MyST-NB pages executed at build time, API reference from the docstrings."""

import os
import re
import sys
from pathlib import Path

# The pages import the project from this checkout, in this process (autodoc) and in the kernel that executes
# them (it inherits PYTHONPATH), whether or not it is installed.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

import posenc_jax  # noqa: E402

project = "posenc_jax"
author = "posenc_jax contributors"
release = posenc_jax.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "jupyter_execute", ".jupyter_cache", "Thumbs.db", ".DS_Store"]

# Every code cell of every page runs when the site is built; an error fails the build.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 300
nb_merge_streams = True
# Cells may show a table (an object with `_repr_markdown_`): rendered as MyST, so GitHub-style tables work.
nb_render_markdown_format = "myst"
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Attributes:" sections render as a field list: a dataclass field is then described once (by its docstring),
# not a second time as an autodoc attribute.
napoleon_use_ivar = True

html_theme = "sphinx_book_theme"
html_title = "posenc_jax"


def _insert_experiments_readme(app, docname, source):
    """The experiments page is experiments/README.md, with its repository links made to work in the site.

    Images and links to the committed results are relative to experiments/; from docs/ they become
    `../experiments/...`, and links to files that are not pages of the site (reports, JSON) become downloads
    (MyST's `path:` links), so that one README serves the repository and the site.
    """
    if docname != "experiments":
        return
    text = (ROOT / "experiments" / "README.md").read_text()
    text = re.sub(r"(!\[[^\[\]\n]*\]\()(?![a-z]+:|#|/)", r"\1../experiments/", text)
    text = re.sub(r"(?<!!)(\[[^\[\]\n]*\]\()(?![a-z]+:|#|/)", r"\1path:../experiments/", text)
    source[0] = source[0] + "\n" + text


def setup(app):
    app.connect("source-read", _insert_experiments_readme)
