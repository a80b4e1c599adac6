"""Build the book: jupytext -> papermill -> jupyter-book, with execution times.

1. Each chapter's MyST Markdown source becomes a notebook (jupytext).
2. papermill executes it with the parameters ``profile`` and ``seed`` (from a
   clean kernel, cwd = the staging folder) and records the time it took.
3. ``jupyter-book build`` renders the staged front matter and executed notebooks
   with execution off and warnings as errors.

The chapters are executed once; each requested edition is rendered from them (the
student edition with every solution removed). Output: ``<out>/html`` (the book),
``<out>/student/html`` (student edition) and ``<out>/execution_times.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import jupytext
import nbformat
import papermill
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def chapters_in_toc() -> list[str]:
    """The chapter notebooks listed in _toc.yml, e.g. ['chapters/01_linear_explanation']."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f for f in files if f.startswith("chapters/")]


# A fenced {solution} directive, and the opening / closing fences of a gated solution.
SOLUTION = re.compile(r"^(?P<f>`{3,}|:{3,})\{solution\}[^\n]*\n.*?^(?P=f)[ \t]*(\n|$)", re.M | re.S)
GATE_START = re.compile(r"^(?P<f>`{3,}|:{3,})\{solution-start\}[^\n]*\n.*?^(?P=f)[ \t]*(\n|$)", re.M | re.S)
GATE_END = re.compile(r"^(?P<f>`{3,}|:{3,})\{solution-end\}[^\n]*\n.*?^(?P=f)[ \t]*(\n|$)", re.M | re.S)


def strip_solutions(nb) -> int:
    """Remove every exercise solution from a notebook (the student edition); returns how many.

    Handles ``{solution}`` blocks inside Markdown cells and gated solutions
    (``{solution-start}`` … ``{solution-end}``) that enclose code cells.
    """
    kept, inside, removed = [], False, 0
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            if not inside:
                kept.append(cell)
            continue
        text = cell.source
        if inside:
            end = GATE_END.search(text)
            if not end:
                continue
            text, inside = text[end.end():], False
        text, n = SOLUTION.subn("", text)
        removed += n
        start = GATE_START.search(text)
        if start:
            end = GATE_END.search(text, start.end())
            if end:
                text = text[:start.start()] + text[end.end():]
            else:
                text, inside = text[:start.start()], True
            removed += 1
        if text.strip():
            cell.source = text
            kept.append(cell)
    if inside:
        raise ValueError("a {solution-start} has no matching {solution-end}")
    nb.cells = kept
    return removed


def stage_front_matter(stage: pathlib.Path, edition: str) -> None:
    """Copy the configuration, table of contents and front matter into ``stage``."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    if edition == "student":
        config["title"] += " (student edition)"
    (stage / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(ROOT / "_toc.yml", stage / "_toc.yml")
    shutil.copytree(ROOT / "book", stage / "book", dirs_exist_ok=True)


def execute_chapter(name: str, stage: pathlib.Path, profile: str, seed: int) -> float:
    """Execute chapters/<name>.md into the staging folder; returns seconds taken."""
    source = ROOT / f"{name}.md"
    target = stage / f"{name}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = target.with_suffix(".raw.ipynb")
    nbformat.write(jupytext.read(source), raw)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(raw), str(target), parameters={"profile": profile, "seed": seed},
            cwd=str(target.parent), kernel_name="python3", progress_bar=False,
            log_output=False, request_save_on_cell_execute=False,
        )
    finally:
        raw.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    # Hide papermill's injected-parameters cell in the HTML.
    nb = nbformat.read(target, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, target)
    return seconds


def student_stage(stage: pathlib.Path, student: pathlib.Path) -> None:
    """The student edition's sources: the executed notebooks with every solution removed."""
    if student.exists():
        shutil.rmtree(student)
    student.mkdir(parents=True)
    stage_front_matter(student, "student")
    for nb_path in (stage / "chapters").glob("*.ipynb"):
        nb = nbformat.read(nb_path, as_version=4)
        strip_solutions(nb)
        (student / "chapters").mkdir(exist_ok=True)
        nbformat.write(nb, student / "chapters" / nb_path.name)


def render(stage: pathlib.Path, html: pathlib.Path) -> None:
    """``jupyter-book build`` with execution off and warnings as errors, into ``html``."""
    site = stage.parent / f"{stage.name}-site"
    jupyter_book = pathlib.Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jupyter_book), "build", str(stage), "--path-output", str(site),
           "--builder", "html", "-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True, env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    if html.exists():
        shutil.rmtree(html)
    html.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(site / "_build" / "html"), html)
    shutil.rmtree(site)


def build(out: pathlib.Path, profile: str, seed: int, editions: list[str], only: list[str] | None) -> dict:
    """Execute the chapters once, then render each edition ("full" → out/html, "student" → out/student/html)."""
    # Kernels must use the inline backend so figures become outputs (Agg would swallow them).
    os.environ.pop("MPLBACKEND", None)
    stage = out / "stage"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    stage_front_matter(stage, "full")
    times = {}
    names = chapters_in_toc()
    if only:  # any chapter source, also one not yet in the table of contents (a draft)
        missing = [n for n in only if not (ROOT / "chapters" / f"{n}.md").exists()]
        if missing:
            raise SystemExit(f"--chapters: no chapters/<name>.md for {missing}")
        names = [f"chapters/{n}" for n in only]
    for name in names:
        print(f"executing {name} (profile={profile}, seed={seed}) ...", flush=True)
        times[name] = round(execute_chapter(name, stage, profile, seed), 1)
        print(f"  {name}: {times[name]:.1f} s", flush=True)
    if only:
        return times
    (out / "execution_times.json").write_text(json.dumps(
        {"profile": profile, "seed": seed, "seconds": times}, indent=2))
    for edition in editions:
        if edition == "full":
            render(stage, out / "html")
        else:
            student_stage(stage, out / "stage-student")
            render(out / "stage-student", out / "student" / "html")
    print("\nchapter execution times (s):")
    for name, s in times.items():
        print(f"  {s:8.1f}  {name}")
    print(f"  {sum(times.values()):8.1f}  in all")
    for edition in editions:
        print(f"{edition} edition: {out / ('html' if edition == 'full' else 'student/html') / 'index.html'}")
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "_build"), help="output folder (default _build)")
    parser.add_argument("--profile", default="fast", choices=["auto", "fast", "full"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--editions", nargs="+", default=["full"], choices=["full", "student"],
                        help="which editions to render from one execution (student: without solutions)")
    parser.add_argument("--chapters", nargs="*", help="only execute these chapters (no HTML build)")
    args = parser.parse_args(argv)
    build(pathlib.Path(args.out).resolve(), args.profile, args.seed, args.editions, args.chapters)


if __name__ == "__main__":
    main()
