"""The documentation site builds with no warning, has a page for every public name and every gallery example, with
its figures, and no internal link points at nothing.

The build runs the gallery in quick mode (``FASTBP_DOCS_QUICK=1``: every example, on smaller problems); ``make docs``
runs them in full.
"""

import html.parser
import inspect
import os
import pathlib
import re
import subprocess
import sys
import urllib.parse

import pytest

pytest.importorskip("sphinx_gallery", reason="the docs extra is not installed")

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    env = dict(os.environ, FASTBP_DOCS_QUICK="1", MPLBACKEND="Agg")
    run = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
                          "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"sphinx-build failed:\n{run.stdout[-5000:]}\n{run.stderr[-10000:]}"
    return out / "html"


def api_names():
    """(module, name) for every entry of the autosummary tables in docs/api.rst."""
    names, module, in_table = [], None, False
    for line in (DOCS / "api.rst").read_text().splitlines():
        if line.startswith(".. currentmodule::"):
            module = line.split("::")[1].strip()
        elif line.startswith(".. autosummary::"):
            in_table = True
        elif in_table and re.fullmatch(r"   \w+", line):
            names.append((module, line.strip()))
        elif line and not line.startswith(" "):
            in_table = False
    return names


def test_every_public_name_has_an_api_page_with_its_methods(site):
    import fastbp
    import fastbp.distributed  # noqa: F401
    import fastbp.onnx  # noqa: F401
    import fastbp.sklearn  # noqa: F401
    names = api_names()
    documented = {f"{m}.{n}" for m, n in names}
    for public in fastbp.__all__:
        if public not in ("kernels", "schedules", "__version__"):
            assert f"fastbp.{public}" in documented
    for public in fastbp.kernels.__all__:
        if callable(getattr(fastbp.kernels, public)):
            assert f"fastbp.kernels.{public}" in documented
    for module, name in names:
        page = site / "generated" / f"{module}.{name}.html"
        assert page.is_file(), page
        obj = getattr(sys.modules[module], name)
        text = page.read_text()
        for member in public_members(obj):  # every public method and property has its entry on the class page
            assert f'id="{module}.{name}.{member}"' in text, f"{module}.{name}.{member}"


def public_members(obj):
    """The public methods and properties a class of fastbp defines or inherits from fastbp's classes (not those
    scikit-learn's base classes add)."""
    if not inspect.isclass(obj):
        return set()
    members = set()
    for klass in obj.__mro__:
        for member, value in vars(klass).items():
            function = getattr(value, "fget", None) or getattr(value, "__func__", None) or getattr(value, "fn", None) \
                or value  # a property, classmethod, scikit-learn's available_if, or a function
            if not member.startswith("_") and inspect.isfunction(function) and function.__module__.startswith("fastbp"):
                members.add(member)
    return members


def test_every_guide_page_and_gallery_example_is_built_with_its_figures(site):
    for md in (DOCS / "guide").glob("*.md"):
        assert (site / "guide" / f"{md.stem}.html").is_file(), md
    examples = sorted((DOCS / "gallery").glob("plot_*.py"))
    assert len(examples) >= 5
    for example in examples:
        page = (site / "auto_examples" / f"{example.stem}.html").read_text()
        images = re.findall(r'src="(\.\./_images/sphx_glr_' + example.stem + r'_\d+\.png)"', page)
        assert images, f"{example.name} made no figure"
        for image in images:
            assert (site / "auto_examples" / image).is_file()


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append(attrs[key])


def test_internal_links_resolve(site):
    """Every relative href and src points at a file of the site, and every #fragment at an id on that page."""
    pages = {}
    for page in site.rglob("*.html"):
        if page.relative_to(site).parts[0] == "_static":  # the theme's own templates, copied as they are
            continue
        parser = _Links()
        parser.feed(page.read_text())
        pages[page.resolve()] = parser
    broken = []
    for page, parser in pages.items():
        for link in parser.links:
            parts = urllib.parse.urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:")):
                continue
            target = (page.parent / urllib.parse.unquote(parts.path)).resolve() if parts.path else page
            if not target.exists() or target.suffix == ".html" and target not in pages:
                broken.append(f"{page.relative_to(site.resolve())}: {link}")
            elif parts.fragment and target.suffix == ".html" and parts.fragment not in pages[target].ids:
                broken.append(f"{page.relative_to(site.resolve())}: {link} (no such id)")
    assert len(pages) > 20
    assert not broken, "\n".join(broken[:50])
