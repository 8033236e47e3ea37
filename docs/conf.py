"""Sphinx configuration: numpydoc API pages, a MyST user guide and a sphinx-gallery of executed examples.

``make docs`` runs every example in full. ``FASTBP_DOCS_QUICK=1`` (what ``make test`` builds through
``tests/test_docs.py``) still runs every example, on smaller problems, so a broken example fails CI too
(each example reads the variable itself, in a block the rendered page hides).
"""

import fastbp

project = "fastbp"
author = "the fastbp developers"
copyright = "2026, the fastbp developers"
release = version = fastbp.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "gallery"]
templates_path = ["_templates"]

autosummary_generate = True
numpydoc_show_class_members = False  # each class page lists its methods through the autosummary template
numpydoc_class_members_toctree = False
# Every public name and parameter is documented: a missing docstring or parameter fails the build (-W).
numpydoc_validation_checks = {"GL08", "PR01", "PR02"}
numpydoc_validation_exclude = {r"\.__init__$", r"\.__call__$", r"\.__len__$", r"\.__getstate__$", r"\.__setstate__$"}

myst_heading_anchors = 3

sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "run_stale_examples": True,  # a quick build's figures never stand in for a full one's
    "matplotlib_animations": False,
    "capture_repr": (),  # no "Text(...)" under a cell that ends in a matplotlib call
    "within_subsection_order": "FileNameSortKey",
}

html_theme = "pydata_sphinx_theme"
html_title = f"fastbp {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path = ["_static"]
html_css_files = ["custom.css"]


def _foreign(obj):
    """Whether a member was written outside fastbp: scikit-learn's base classes bring ``get_params``, ``score``,
    ``set_fit_request``... whose docstrings follow scikit-learn's glossary, which this site does not have."""
    target = obj.fget if isinstance(obj, property) else obj
    module = getattr(target, "__module__", None) if callable(target) else None
    return module is not None and not module.startswith("fastbp")


def setup(app):
    app.connect("autodoc-skip-member", lambda app, what, name, obj, skip, options: True if _foreign(obj) else None)
