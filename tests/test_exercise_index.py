"""The exercise index page: one row per exercise of the book, with working links, in both editions."""

import importlib.util
import json
import pathlib
import re
from html import unescape

import pytest

from advcourse.grade import KINDS, chapter_exercises

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
build_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_book)

NAMES = build_book.chapters_in_toc()
EXERCISES = [e for n in NAMES for e in chapter_exercises((ROOT / f"{n}.md").read_text(), pathlib.Path(n).name)]


def test_the_index_has_one_row_per_exercise_with_time_kind_and_checker():
    page = build_book.exercise_index(NAMES)
    rows = [line for line in page.splitlines() if line.startswith("| {doc}")]
    assert len(rows) == len(EXERCISES) == len({e.label for e in EXERCISES})
    for ex, row in zip(EXERCISES, rows):
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[1] == f"{{ref}}`{ex.label}`: {ex.title}"
        assert cells[2] in KINDS and re.fullmatch(r"\d+ min", cells[3]), f"{ex.label}: add :class: minutes-N <kind>"
        assert cells[0] == f"{{doc}}`{int(ex.chapter[:2])} <../chapters/{ex.chapter}>`"
        assert cells[4] == ("yes" if ex.checked else "no")
    checked = sum(e.checked for e in EXERCISES)
    assert f"{len(EXERCISES)} in all, {checked} of them checked automatically" in page


def test_a_preview_indexes_only_its_chapters():
    page = build_book.exercise_index(NAMES[:1])
    assert page.count("| {doc}") == sum(e.chapter == pathlib.Path(NAMES[0]).name for e in EXERCISES)


def test_the_index_is_in_the_table_of_contents():
    files = [c["file"] for part in build_book.staged_toc()["parts"] for c in part["chapters"]]
    assert "book/exercises" in files


SMART_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


@pytest.mark.book
@pytest.mark.parametrize("edition", ["html", "student/html"])
def test_the_built_index_links_every_exercise(book, edition):
    site = book / edition
    built = json.loads((book / "execution_times.json").read_text())["seconds"]  # a preview builds a few chapters
    exercises = [e for e in EXERCISES if f"chapters/{e.chapter}" in built]
    html = (site / "book" / "exercises.html").read_text()
    table = html[html.index("<tbody>"):html.index("</tbody>")]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    assert len(rows) == len(exercises) > 0
    for ex, row in zip(exercises, rows):
        target = re.search(rf'href="\.\./(chapters/{ex.chapter}\.html)#{ex.label}"', row)
        assert target, f"{ex.label}: no link to its exercise"
        page = (site / target[1]).read_text()
        assert f'id="{ex.label}"' in page, f"{ex.label}: the link's target is not on {target[1]}"
        shown = unescape(row).translate(SMART_QUOTES)  # Sphinx's smartquotes: ' -> ’, " -> “ ”
        number = re.search(r"Exercise (\d+)", shown)
        assert number and ex.title in shown
