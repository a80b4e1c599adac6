"""The book pipeline end to end: paired notebooks, execution, HTML with figures, math and no CDN.

The book is built once per test session (every chapter executed by papermill, then
``jupyter-book build -W``) with the same script as ``make book``.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
from html import unescape

import jupytext
import nbformat
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.md"))

pytestmark = pytest.mark.book


def build_title(name: str) -> str:
    """A chapter's first heading, as the runtime page links it."""
    return next(line[2:].strip() for line in (ROOT / f"{name}.md").read_text().splitlines() if line.startswith("# "))


def visible_text(html: str) -> str:
    html = re.sub(r"<(script|style).*?</\1>", "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def test_every_chapter_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    for md in CHAPTERS:
        assert f"chapters/{md.stem}" in toc


def test_paired_notebooks_are_in_sync():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_notebooks.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"run `make sync`:\n{result.stdout}"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_paired_notebook_installs_in_colab_and_has_no_outputs(md):
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0].source
    assert "google.colab" in first and "pip" in first and f'REPO_URL = "{url}"' in first
    assert "parameters" in code[1].metadata.get("tags", []), "second code cell is papermill's parameters cell"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert jupytext.read(md).cells[0].source == nb.cells[0].source


def test_execution_times_are_recorded(book):
    times = json.loads((book / "execution_times.json").read_text())
    assert times["profile"] == "fast"
    assert set(times["seconds"]) == {f"chapters/{md.stem}" for md in CHAPTERS}
    assert all(s > 0 for s in times["seconds"].values())
    assert set(times["reused"]) <= set(times["seconds"])
    if not os.environ.get("ADVCOURSE_BOOK"):                      # the session's fresh build executes everything
        assert times["reused"] == []
    assert all(mb is None or mb > 100 for mb in times["peak_mb"].values())  # torch alone takes more


def test_the_runtime_page_lists_every_chapter_with_time_and_memory(book):
    times = json.loads((book / "execution_times.json").read_text())
    text = unescape(visible_text((book / "html" / "book" / "runtime.html").read_text()))
    assert "profile" in text and "peak memory" in text
    for name, seconds in times["seconds"].items():
        title = build_title(name)
        assert title in text, title
        assert f"{seconds:.0f} s" in text


def test_math_is_offline_and_nothing_comes_from_a_cdn(book):
    html_dir = book / "html"
    assert (html_dir / "_static" / "mathjax" / "tex-chtml.js").exists()
    for page in html_dir.rglob("*.html"):
        html = page.read_text()
        remote = re.findall(r'<script[^>]+src="(https?:)?//[^"]+"', html)
        remote += re.findall(r'<link[^>]+href="(?:https?:)?//[^"]+\.(?:css|js)[^"]*"', html)
        assert not remote, f"{page.name} loads {remote}"
        if 'class="math' in html:  # pages with math load the bundled MathJax
            assert re.search(r'src="[^"]*_static/mathjax/tex-chtml\.js', html)


def test_every_script_is_included_once(book):
    for page in (book / "html").rglob("*.html"):
        scripts = re.findall(r"<script[^>]*>.*?</script>", page.read_text(), flags=re.S)
        assert len(scripts) == len(set(scripts)), f"{page.name} repeats a script"



def exercise_boxes(html: str) -> int:
    """How many exercise boxes a page has (their class list also carries the exercise's
    ``:class:`` options, e.g. ``minutes-15 derivation``, in an order Sphinx chooses)."""
    return sum({"exercise", "admonition"} <= set(classes.split())
               for classes in re.findall(r'<div class="([^"]*)"', html))

@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_page_has_figures_tables_math_exercises_and_stamp(book, md):
    page = book / "html" / "chapters" / f"{md.stem}.html"
    html = page.read_text()
    images = re.findall(r'<img[^>]+src="\.\./(_images/[^"]+\.png)"', html)
    assert len(images) >= 3
    assert all((book / "html" / src).exists() for src in images)
    assert html.count("<table") >= 2
    assert 'class="math' in html and r"\[" in html
    assert exercise_boxes(html) >= 3
    assert html.count('class="solution') >= 3
    text = visible_text(html)
    assert "Reproducibility stamp" in text and "profile fast" in text
    assert "Paper vs this book" in text
    assert 'profile = "fast"' not in text, "papermill's injected cell must be hidden"
    assert "Traceback" not in text


def test_colab_button_opens_the_paired_notebook(book):
    html = (book / "html" / "chapters" / "01_linear_explanation.html").read_text()
    assert re.search(r'colab\.research\.google\.com/github/[^"]+/blob/main/chapters/01_linear_explanation\.ipynb', html)


def test_student_edition_hides_solutions(book):
    out = book
    html = (out / "student" / "html" / "chapters" / "01_linear_explanation.html").read_text()
    assert exercise_boxes(html) >= 3
    assert 'class="solution' not in html
    assert "def worst_case" not in html and "The problem separates over pixels" not in html
    assert "student edition" in html
    assert "colab.research.google.com" not in html, "Colab would open the notebooks with the solutions"
    staged = nbformat.read(out / "stage-student" / "chapters" / "01_linear_explanation.ipynb", as_version=4)
    assert not any("def worst_case" in c.source for c in staged.cells), "solutions leave the notebooks too"
