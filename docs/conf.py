"""Sphinx configuration of the skinvert documentation.

Build (from the repository root, after ``pip install -e ".[docs]"``)::

    python -m sphinx -W -b html docs /tmp/skinvert-html

Generated sources (autosummary pages, the gallery) land in docs/ paths that
.gitignore covers; the HTML goes wherever the last argument says.
"""

import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # document the checkout, installed or not
sys.path.insert(0, str(HERE))  # gallery_order

import skinvert  # noqa: E402

project = "skinvert"
author = "skinvert developers"
copyright = "2026, skinvert developers"
release = skinvert.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "_templates",
    "**.ipynb_checkpoints",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.json",
    "auto_examples/*.md5",
    "sg_execution_times.rst",
]
# Pages written by other parts of the project and pulled in through include
# directives only; not standalone pages.
exclude_patterns += ["figures/*"]

# -- autodoc / autosummary / numpydoc ----------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"inherited-members": False, "members": True}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()


def _skip_member(app, what, name, obj, skip, options):
    # scikit-learn's generated metadata-routing setters (set_transform_request,
    # ...) carry scikit-learn's own cross-references; they are documented there.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return skip


# The threat model (docs/security.md) is written separately: the user guide
# lists it when it exists (a toctree entry for a missing page is an error).
SECURITY_TOCTREE = """

```{toctree}
:maxdepth: 1

/security
```
"""


THREAT_MODEL_TEXT = "the threat model (the security page of this guide)"


def _add_security_page(app, docname, source):
    if not (HERE / "security.md").exists():
        return
    if docname == "user_guide/index":
        source[0] += SECURITY_TOCTREE
    if docname.startswith("user_guide/"):
        source[0] = source[0].replace(THREAT_MODEL_TEXT, "[the threat model](../security.md)")


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("source-read", _add_security_page)

# -- MyST ---------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# -- intersphinx (offline builds fall back to plain text, never an error) ----
intersphinx_mapping = {}
if os.environ.get("SKINVERT_DOCS_INTERSPHINX"):
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
    }

# -- sphinx-gallery -----------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "gallery_order.ExampleOrder",
    "backreferences_dir": "api/generated",
    "doc_module": ("skinvert",),
    "reference_url": {"skinvert": None},
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "matplotlib_animations": False,
    "show_memory": False,
    "plot_gallery": os.environ.get("SKINVERT_DOCS_PLOT_GALLERY", "True"),
}

# The examples run under the Agg backend; their warnings are theirs to show.
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", category=UserWarning,
                        message="Matplotlib is currently using agg")

# -- HTML ---------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skinvert {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "header_links_before_dropdown": 7,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "changelog": [], "benchmarks": []}
html_show_sourcelink = False
