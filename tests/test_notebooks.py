"""The notebooks Colab opens (chapters/*.ipynb): generated from the chapters, plain Markdown, and run by nbval.

- They are in sync with the chapters' MyST sources and contain no raw MyST role or directive.
- Glued numbers are rendered in the reader's kernel by ``advcourse.report.prose`` as myst-nb would.
- Numbers (equations, exercises) and citation labels are the ones the built book shows.
- nbval: a chapter is executed as in Colab — a fake ``google.colab`` module, the set-up cell cloning
  this checkout and installing it (no dependencies, into a throw-away folder, nothing downloaded) —
  then ``pytest --nbval`` executes it again and compares every output (tests/nbval_sanitize.cfg masks
  timings, paths and progress bars): the same seed on the CPU gives the same outputs. CI checks
  chapter 1; ``make nbval`` (``ADVCOURSE_NBVAL=all``) every chapter.
"""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys
from html import unescape

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "scripts" / "sync_notebooks.py")
sync_notebooks = importlib.util.module_from_spec(spec)
sys.modules["sync_notebooks"] = sync_notebooks  # dataclasses look their module up
spec.loader.exec_module(sync_notebooks)

CHAPTERS = sorted((ROOT / "chapters").glob("*.md"))
# Raw MyST: a role, a directive fence, a target "(label)=", an equation label "$$ (label)".
RAW_MYST = re.compile(r"\{[\w:-]+\}`|^ *(`{3,}|:{3,})\{[\w:-]+\}|^\([\w.:-]+\)=[ \t]*$|\$\$[ \t]*\([\w.:-]+\)[ \t]*$",
                      re.M)
GLUE_ROLE = re.compile(r"\{glue:?(any|text|md)?\}`[^`]+`")


def is_prose(cell) -> bool:
    return cell.cell_type == "code" and "prose" in cell.metadata.get("tags", [])


def test_notebooks_are_in_sync():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_notebooks.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"run `make sync`:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_has_no_raw_myst(md):
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            text = cell.source
        elif is_prose(cell):  # its glue roles are rendered by the kernel; nothing else may be left
            text = GLUE_ROLE.sub("", cell.source)
        else:
            continue
        raw = [m[0] for m in RAW_MYST.finditer(text)]
        assert not raw, f"cell {i} of {md.stem}.ipynb shows raw MyST: {raw}"
    source = md.read_text()
    if "{glue" in source:
        assert any(is_prose(c) for c in nb.cells)
    if "{cite" in source:
        assert nb.cells[-1].source.startswith("## References")
    for cell in nb.cells:  # a prose cell hides its code in Colab (a form) and in Jupyter
        if is_prose(cell):
            assert cell.source.startswith("# @title") and cell.metadata["cellView"] == "form"
            assert cell.metadata["jupyter"]["source_hidden"] is True
    assert "jupytext" not in nb.metadata, "a Jupytext pairing would overwrite the chapter's source"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_student_edition_has_no_solutions_and_the_full_one_hides_them(md):
    source = md.read_text()
    n_solutions = len(re.findall(r"^(`{3,}|:{3,})\{solution\}", source, re.M))
    n_gated = len(re.findall(r"^(`{3,}|:{3,})\{solution-start\}", source, re.M))
    n_exercises = len(re.findall(r"^(`{3,}|:{3,})\{exercise\}", source, re.M))
    full = sync_notebooks.colab_notebook(md, "full")
    student = sync_notebooks.colab_notebook(md, "student")
    text = "\n".join(c.source for c in full.cells)
    assert text.count("<details>") == text.count("</details>") >= n_solutions
    assert len(re.findall(r"^\*\*Solution to Exercise \d+\*\*$", text, re.M)) == n_gated
    student_text = "\n".join(c.source for c in student.cells)
    assert "Solution to Exercise" not in student_text and "<details>" not in student_text
    assert len(re.findall(r"^### Exercise \d+", student_text, re.M)) == n_exercises
    # the gated solutions' code cells go too, and nothing else
    n_code = sum(c.cell_type == "code" and not is_prose(c) for c in full.cells)
    assert sum(c.cell_type == "code" and not is_prose(c) for c in student.cells) < n_code or not n_gated
    with pytest.raises(ValueError, match="edition"):
        sync_notebooks.colab_notebook(md, "teacher")


def test_citations_equations_and_references_become_text():
    nb = sync_notebooks.colab_notebook(ROOT / "chapters" / "04_pgd_saddle_point.md")
    text = "\n".join(c.source for c in nb.cells)
    numbers = sync_notebooks.book_index().equations
    assert f"\\tag{{{numbers['ch04-saddle']}}}" in text
    assert f"eq. ({numbers['ch04-pgd']})" in text
    assert "(Madry et al., 2018)" in text or "Madry et al. (2018)" in text
    assert "Kurakin et al. (2017b)" in text  # the year field as written: two 2017 papers by Kurakin et al.
    assert "- **Madry et al., 2018**: Aleksander Madry" in text  # the reference list
    assert re.search(r"^### Exercise \d+ \(Danskin's theorem in one dimension\)$", text, re.M)
    ch09 = "\n".join(c.source for c in sync_notebooks.colab_notebook(ROOT / "chapters" / "09_vit.md").cells)
    assert "the section Adversarial examples" in ch09  # a {ref} to a section of the same chapter


def test_numbers_and_citations_are_the_books(book):
    """Equation and exercise numbers and citation labels agree with the rendered book."""
    index, labels = sync_notebooks.book_index(), sync_notebooks.citation_labels()
    equation = re.compile(r'id="equation-([\w.:-]+)">\s*<span class="eqno">\((\d+)\)')
    exercise = re.compile(r'<div class="[^"]*" id="([\w.:-]+)">\s*<p class="admonition-title">'
                          r'<span class="caption-number">Exercise (\d+)')
    shown = {}
    for md in CHAPTERS:
        html = (book / "html" / "chapters" / f"{md.stem}.html").read_text()
        shown |= {label: int(n) for pattern in (equation, exercise) for label, n in pattern.findall(html)}
    ours = {**index.equations, **{label: number for label, (number, _) in index.exercises.items()}}
    assert len(shown) > 100 and shown == {label: ours[label] for label in shown}
    titles = {key: sync_notebooks.latex_text(entry.fields["title"]).lower()
              for key, entry in sync_notebooks.bibliography().items()}
    checked = 0
    for page in (book / "html" / "chapters").glob("*.html"):
        cites = re.findall(r'href="[^"]*references\.html#[^"]*" title="([^"]*)">(.*?)</a>', page.read_text())
        for title, shown in cites:
            # the entry whose title the tooltip quotes (the longest: "layer normalization" is in another title)
            key = max((k for k, t in titles.items() if t in unescape(title).lower()), key=lambda k: len(titles[k]))
            assert labels[key] == unescape(re.sub(r"<[^>]+>", "", shown)), key
            checked += 1
    assert checked > 50



def test_download_button_serves_the_readable_notebooks(book):
    """The page's download button (``_sources/chapters/*.ipynb``) serves the generated notebook of the
    edition, never the executed MyST one."""
    for edition, html in (("full", book / "html"), ("student", book / "student" / "html")):
        served = sorted((html / "_sources" / "chapters").glob("*.ipynb"))
        assert len(served) == len(CHAPTERS)
        for path in served:
            nb = nbformat.read(path, as_version=4)
            expected = sync_notebooks.colab_notebook(ROOT / "chapters" / f"{path.stem}.md", edition)
            assert [c.source for c in nb.cells] == [c.source for c in expected.cells], (edition, path.stem)

# --- the glued values in the reader's kernel -------------------------------------------------------------

def test_prose_renders_glued_values_as_myst_nb_does():
    from myst_nb.core.variables import format_plain_text as myst_format

    from advcourse import report

    for text, spec in [("0.123456", ".2f"), ("3", "d"), ("0.25", ".1%"), ("'12.3%'", "s"), ("12.3%", ""),
                       ("7", "s"), ("1234567.0", ",.0f")]:
        assert report.format_plain_text(text, spec) == myst_format(text, spec)
    report.glue("test_nb_str", "12.3% (×16)")
    report.glue("test_nb_float", 0.123456)
    report.glue("test_nb_table", report.MarkdownTable(["a"], [[1]]))
    report.glue("test_nb_markup", "a_b *c* |d|")
    md = report._rendered("s {glue:}`test_nb_str`, f {glue:text}`test_nb_float:.2f`, any {glue:any}`test_nb_float`"
                          "\n\n{glue:md}`test_nb_table`\n\nraw {glue:}`test_nb_markup`")
    assert md.startswith("s 12.3% (×16), f 0.12, any 0.123456\n\n| a |\n|---|\n| 1 |")
    assert md.endswith(r"raw a\_b \*c\* \|d\|")  # shown as typed, as myst-nb shows text


def test_prose_shown_before_its_value_is_completed_when_the_value_is_glued(monkeypatch):
    import IPython.display

    from advcourse import report

    shown, updated = [], []
    monkeypatch.setattr(IPython.display, "display", lambda obj, display_id: shown.append((display_id, obj.data)))
    monkeypatch.setattr(IPython.display, "update_display",
                        lambda obj, display_id, metadata: updated.append((display_id, obj.data)))
    report.prose("early {glue:}`test_nb_late` and {glue:}`test_nb_str`")
    assert shown[0][1] == f"early {report.NOT_YET} and 12.3% (×16)"
    report.glue("test_nb_late", "42")
    assert updated == [(shown[0][0], "early 42 and 12.3% (×16)")]
    report.glue("test_nb_late", "43")  # complete: no longer waiting
    assert len(updated) == 1


# --- nbval: the notebooks executed as in Colab, twice, outputs compared ----------------------------------

NBVAL_CHAPTERS = (CHAPTERS if os.environ.get("ADVCOURSE_NBVAL") == "all"
                  else [ROOT / "chapters" / "01_linear_explanation.md"])


# Run by the kernel at start-up (an IPython startup file).
FAKE_COLAB = """
import sys, types
google = sys.modules.setdefault("google", types.ModuleType("google"))
sys.modules["google.colab"] = google.colab = types.ModuleType("google.colab")

# nbval runs cells with store_history=False, so IPython's check for a final ';' (which reads the
# history) would look at the previous cell and show a value the cell suppresses; check the running cell.
_ip, _cell = get_ipython(), {"source": ""}
_ip.events.register("pre_run_cell", lambda info: _cell.update(source=info.raw_cell))


def _quiet():
    try:
        return _ip.displayhook.semicolon_at_end_of_expression(_ip.transform_cell(_cell["source"]))
    except Exception:
        return False


_ip.displayhook.quiet = _quiet
"""


NBVAL_SKIP_STDERR = """
import nbval.plugin

_init = nbval.plugin.IPyNbFile.__init__


def _init_skipping_stderr(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.skip_compare = (*self.skip_compare, "stderr")


nbval.plugin.IPyNbFile.__init__ = _init_skipping_stderr
"""


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """Environment variables under which a kernel behaves like Colab's for the set-up cell: a fake
    ``google.colab`` module imported at start-up, the repository URL pointed at this checkout, and pip
    installing without dependencies or an index into a throw-away folder."""
    base = tmp_path_factory.mktemp("colab")
    startup = base / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-fake-colab.py").write_text(FAKE_COLAB)
    return {
        "IPYTHONDIR": str(base / "ipython"),
        "ADVCOURSE_REPO": ROOT.as_uri(),  # a file:// URL: git honours --depth for it
        "ADVCOURSE_CLONE": str(base / "advcourse"),
        "PIP_NO_DEPS": "1", "PIP_NO_INDEX": "1", "PIP_TARGET": str(base / "site-packages"),
        "PIP_NO_BUILD_ISOLATION": "0",  # (sic: pip reads this as --no-build-isolation) use installed setuptools
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }


@pytest.mark.book
@pytest.mark.parametrize("md", NBVAL_CHAPTERS, ids=lambda p: p.stem)
def test_nbval_reproduces_the_notebook_run_as_in_colab(md, colab, tmp_path):
    from nbclient import NotebookClient

    notebook = tmp_path / md.with_suffix(".ipynb").name
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    with pytest.MonkeyPatch.context() as mp:  # the kernel inherits this process's environment
        for key, value in colab.items():
            mp.setenv(key, value)
        mp.delenv("MPLBACKEND", raising=False)
        NotebookClient(nb, kernel_name="python3", timeout=1800,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    # nbval does not see a display updated by a later cell (prose completed by a value computed below)
    for cell in nb.cells:
        if any(o.get("metadata", {}).get("advcourse", {}).get("completed_later") for o in cell.get("outputs", [])):
            cell.metadata.setdefault("tags", []).append("nbval-ignore-output")
    nbformat.write(nb, notebook)
    clone, target = pathlib.Path(colab["ADVCOURSE_CLONE"]), pathlib.Path(colab["PIP_TARGET"])
    assert (clone / "chapters" / md.name).exists(), "the set-up cell did not clone the repository"
    assert (target / "advcourse" / "report.py").exists(), "the set-up cell did not install the package"
    prose = [o for c in nb.cells if is_prose(c) for o in c.outputs]
    assert prose and all(o.output_type == "display_data" and "text/markdown" in o.data for o in prose)
    rendered = "\n".join(o.data["text/markdown"] for o in prose)
    assert "{glue" not in rendered and "computed by a cell below" not in rendered and re.search(r"\d", rendered)
    # Run 2: nbval executes the notebook again in a fresh kernel and compares each cell's outputs, except
    # stderr (progress bars, and training messages that depend on the model cache; the book drops stderr too).
    (tmp_path / "conftest.py").write_text(NBVAL_SKIP_STDERR)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), "--nbval-cell-timeout", "1800",
         "--rootdir", str(tmp_path), str(notebook)],
        cwd=tmp_path, capture_output=True, text=True,
        env={**{k: v for k, v in os.environ.items() if k != "MPLBACKEND"}, **colab})
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
