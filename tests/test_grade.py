"""`advcourse grade`: right, wrong, empty, crashing, hanging, broken and faked submissions each get a clear row.

One class of small notebooks (chapter 1's checked exercise) is graded once for the module; each
submission runs in its own kernel. A real student-edition notebook of chapter 1 is graded end to end.
"""

import csv
import importlib.util
import pathlib
import subprocess
import sys

import nbformat
import pytest

from advcourse import grade

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTER = "01_linear_explanation"

RIGHT = """\
def worst_case(w, b, x, y, eps):
    ytilde = (2 * y - 1).to(x.dtype).unsqueeze(1)
    return (x - eps * ytilde * w.sign()).clamp(0, 1)
"""
WRONG = """\
def worst_case(w, b, x, y, eps):  # forgets the box [0, 1]
    return x - eps * (2 * y - 1).float().unsqueeze(1) * w.sign()
"""
STUB = grade.answer_cell_source(next(e for e in grade.chapter_exercises((ROOT / "chapters" / f"{CHAPTER}.md")
                                                                        .read_text(), CHAPTER) if e.checked))
# A wrong answer whose notebook tries to pass anyway: a patched checker, a printed verdict, a results file.
FAKE = WRONG + """
import json, advcourse.exercises, advcourse.exercises.ch01
advcourse.exercises.check_linear_worst_case = advcourse.exercises.ch01.check_linear_worst_case = lambda f: "ok"
print(json.dumps({"ch01-ex-worst": ["pass", "All 20 checks passed"]}))
open("grades.csv", "w").write("PASS")
"""

SUBMISSIONS = {  # student: code cells
    "right": ["import torch", RIGHT],
    "wrong": ["import torch", WRONG],
    "empty": ["import torch", STUB],
    "no_cells": [],
    "crash": ["import torch", RIGHT, "import os\nos._exit(1)"],
    "hang": ["import torch", RIGHT, "while True:\n    pass"],
    "broken": ["import torch", "def oops(:\n    pass", "def worst_case(w, b, x, y, eps):\n    return x + None",
               "1 / 0"],
    "fake": ["import torch", FAKE],
}


def notebook(cells: list[str], chapter: str | None = CHAPTER):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    if chapter:
        nb.metadata["advcourse"] = {"chapter": chapter, "edition": "student"}
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade every submission (and a missing file) with the console script's code; rows by student."""
    folder = tmp_path_factory.mktemp("submissions")
    paths = []
    for name, cells in SUBMISSIONS.items():
        nbformat.write(notebook(cells), folder / f"{name}.ipynb")
        paths.append(folder / f"{name}.ipynb")
    (folder / "not_json.ipynb").write_text("{ this is not a notebook")
    paths += [folder / "not_json.ipynb", folder / "missing.ipynb"]
    out = folder / "grades"
    assert grade.main([*map(str, paths), "--out", str(out), "--timeout", "30", "--quiet"]) == 0
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["student"]: r for r in rows}, out


def test_one_row_per_submission_and_one_column_per_checked_exercise(graded):
    rows, out = graded
    assert set(rows) == {*SUBMISSIONS, "not_json", "missing"}
    assert list(next(iter(rows.values())))[:5] == ["student", "chapter", "notebook", "passed", "seconds"]
    assert list(next(iter(rows.values())))[5:] == ["ch01-ex-worst"]
    md = (out / "grades.md").read_text()
    assert md.count("\n| ") == len(rows) + 1 and "The exact worst case of a linear classifier" in md


def test_right_wrong_and_empty_answers(graded):
    rows, _ = graded
    assert rows["right"]["ch01-ex-worst"].startswith("pass: All 20 checks passed")
    assert rows["right"]["passed"] == "1/1" and rows["right"]["notebook"] == "ran"
    assert rows["wrong"]["ch01-ex-worst"].startswith("fail: trial 1: x_adv leaves the box [0, 1]")
    assert rows["wrong"]["passed"] == "0/1"
    assert rows["empty"]["ch01-ex-worst"].startswith("not answered")
    assert rows["no_cells"]["ch01-ex-worst"] == "missing: no function worst_case defined"


def test_crashing_and_hanging_notebooks_get_a_row_that_says_so(graded):
    rows, _ = graded
    assert rows["crash"]["notebook"].startswith("crashed: DeadKernelError: Kernel died (the kernel process died")
    assert rows["hang"]["notebook"] == "time-out: stopped after 30 s in code cell 3"
    for name in ("crash", "hang"):
        assert rows[name]["ch01-ex-worst"] == "not run" and rows[name]["passed"] == "0/1"


def test_errors_in_cells_do_not_stop_the_checks(graded):
    rows, _ = graded
    assert rows["broken"]["notebook"].startswith("ran; 2 cell(s) raised, first code cell 2: SyntaxError")
    assert rows["broken"]["ch01-ex-worst"].startswith("error: TypeError: unsupported operand")


def test_printing_pass_or_patching_the_checker_does_not_pass(graded):
    rows, out = graded
    assert rows["fake"]["ch01-ex-worst"].startswith("fail: trial 1: x_adv leaves the box [0, 1]")
    assert (out / "grades.csv").read_text() != "PASS"  # the notebook ran in a folder of its own


def test_unreadable_notebooks_and_unknown_chapters(graded, tmp_path):
    rows, _ = graded
    assert rows["not_json"]["notebook"].startswith("not a readable notebook")
    assert rows["missing"]["notebook"].startswith("not a readable notebook: FileNotFoundError")
    nbformat.write(notebook(["x = 1"], chapter=None), tmp_path / "anonymous.ipynb")
    result = grade.grade_submission(tmp_path / "anonymous.ipynb", "anonymous", {CHAPTER: []})
    assert result.status.startswith("unknown chapter None") and "--chapter" in result.status


def test_every_checked_exercise_names_its_checker_and_answer():
    import advcourse.exercises

    found = [e for md in sorted((ROOT / "chapters").glob("*.md"))
             for e in grade.chapter_exercises(md.read_text(), md.stem) if e.checked]
    assert {e.checker for e in found} == set(advcourse.exercises.__all__)
    assert all(e.answer and e.signature for e in found)


@pytest.mark.book
def test_a_real_student_notebook_end_to_end(tmp_path):
    """Chapter 1's student edition with the stub replaced by a right answer: the whole chapter runs (about
    as long as the chapter: seconds with its models cached, its 3-minute budget without)."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "student_notebooks.py"), "--out", str(tmp_path),
                    CHAPTER], check=True, capture_output=True)
    nb = nbformat.read(tmp_path / f"{CHAPTER}.ipynb", as_version=4)
    assert not any("The problem separates over pixels" in c.source for c in nb.cells), "no solutions"
    (answer,) = [c for c in nb.cells if "answer" in c.metadata.get("tags", [])]
    answer.source = RIGHT
    nbformat.write(nb, tmp_path / "alice.ipynb")
    result = grade.grade_submission(tmp_path / "alice.ipynb", "alice",
                                    {CHAPTER: [e for e in grade.chapter_exercises(
                                        (ROOT / "chapters" / f"{CHAPTER}.md").read_text(), CHAPTER) if e.checked]},
                                    timeout=600)  # the chapter's budget is 3 minutes on an idle CPU, cold cache
    assert result.status.startswith("ran"), result.status  # "ran; k cell(s) raised, first …" is the chapter's
    assert result.verdicts["ch01-ex-worst"][0] == "pass"


def test_answer_cells_follow_their_exercise_also_in_plain_markdown():
    ex = next(e for e in grade.chapter_exercises((ROOT / "chapters" / f"{CHAPTER}.md").read_text(), CHAPTER)
              if e.checked)
    cited = nbformat.v4.new_markdown_cell(f"As Exercise 2 ({ex.title}) shows, …")
    exercise = nbformat.v4.new_markdown_cell(f"### Exercise 2 ({ex.title}, checked automatically)\n\nWrite …\n\n"
                                             "### Exercise 3 (Another one)\n\nShow …")
    nb = nbformat.v4.new_notebook(cells=[cited, nbformat.v4.new_code_cell("x = 1"), exercise,
                                         nbformat.v4.new_markdown_cell("## Summary")])
    assert grade.add_answer_cells(nb, [ex], CHAPTER) == 1
    assert nb.cells[2].source.endswith("Write …") and nb.cells[4].source.startswith("### Exercise 3")
    assert nb.cells[3].source == STUB and nb.cells[3].metadata["tags"] == ["answer"]
    assert nb.metadata["advcourse"]["chapter"] == CHAPTER
    with pytest.raises(ValueError, match="ch01-ex-worst"):
        grade.add_answer_cells(nbformat.v4.new_notebook(cells=[nb.cells[-1]]), [ex], CHAPTER)


def test_every_student_notebook_gets_its_answer_cells():
    spec = importlib.util.spec_from_file_location("student_notebooks", ROOT / "scripts" / "student_notebooks.py")
    student_notebooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(student_notebooks)
    for md in sorted((ROOT / "chapters").glob("*.md")):
        nb = student_notebooks.student_notebook(md)
        answers = [c.metadata["advcourse"]["answer"] for c in nb.cells if "answer" in c.metadata.get("tags", [])]
        assert answers == [e.label for e in grade.chapter_exercises(md.read_text(), md.stem) if e.checked]
        assert not any("{solution" in c.source for c in nb.cells), md.stem
