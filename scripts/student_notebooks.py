"""Write the student edition's notebooks: no solutions, an answer cell after each checked exercise.

Each ``chapters/<name>.md`` becomes ``<out>/<name>.ipynb`` (default ``_build/student-notebooks``) without
outputs, with its solutions removed and, after every exercise marked "checked automatically", a cell
where the student defines the function the checker takes (``def worst_case(...): raise
NotImplementedError``). The notebook records its chapter in its metadata, so ``advcourse grade`` knows
which checkers to run on a submission. These are the notebooks to hand out.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import nbformat

from advcourse.grade import add_answer_cells, chapter_exercises

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def student_notebook(md: pathlib.Path):
    """The student-edition notebook of the chapter source ``md``, with its answer cells."""
    import sync_notebooks

    nb = sync_notebooks.colab_notebook(md, edition="student")  # what Colab serves, in plain Markdown
    add_answer_cells(nb, chapter_exercises(md.read_text(), md.stem), md.stem)
    for i, cell in enumerate(nb.cells):  # no outputs, stable cell ids
        cell["id"] = f"cell-{i:03d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("jupytext", None)
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "_build" / "student-notebooks"), help="output folder")
    parser.add_argument("chapters", nargs="*", help="chapter names, e.g. 01_linear_explanation (default: all)")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sources = [ROOT / "chapters" / f"{n}.md" for n in args.chapters] or sorted((ROOT / "chapters").glob("*.md"))
    for md in sources:
        if not md.exists():
            parser.error(f"no chapter source {md.name}")
        nb = student_notebook(md)
        nbformat.write(nb, out / f"{md.stem}.ipynb")
        answers = sum("answer" in c.metadata.get("tags", []) for c in nb.cells)
        print(f"{out / md.stem}.ipynb: {answers} answer cell(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
