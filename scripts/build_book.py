"""Build the book: jupytext -> papermill -> jupyter-book, with execution times.

1. Each chapter's MyST Markdown source becomes a notebook (jupytext).
2. papermill executes it with the parameters ``profile`` and ``seed`` (from a
   clean kernel, cwd = the staging folder) and records the time it took.
3. ``jupyter-book build`` renders the staged front matter and executed notebooks
   with execution off and warnings as errors.

The chapters are executed once; each requested edition is rendered from them (the
student edition with every solution removed). Output: ``<out>/html`` (the book),
``<out>/student/html`` (student edition) and ``<out>/execution_times.json``.

Incremental builds: an executed chapter is kept in ``<out>/exec-cache`` under a key that
covers its code cells, the source of every package module they use (followed through the
imports), the data, the requirements, the installed versions of the main libraries, the
profile and the seed. When the key is unchanged the
chapter is not executed again: its outputs are reused and its prose (the Markdown cells)
taken from the current source, so a prose edit rebuilds in seconds. ``--force``
re-executes everything. A "Runtime" page in the book lists each chapter's execution time
and peak memory.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
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


def put(path: pathlib.Path, text: str | bytes) -> None:
    """Write ``path`` only if its content changes: Sphinx then re-reads only the pages that changed."""
    data = text.encode() if isinstance(text, str) else text
    if not (path.exists() and path.read_bytes() == data):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def sync_tree(src: pathlib.Path, dst: pathlib.Path) -> None:
    """Copy the files of ``src`` into ``dst``, leaving unchanged files (and their times) alone."""
    for f in src.rglob("*"):
        if f.is_file():
            put(dst / f.relative_to(src), f.read_bytes())


# A fenced {solution} directive (gated solutions, which enclose code cells, are sync_notebooks.strip_gated's).
SOLUTION = re.compile(r"^(?P<f>`{3,}|:{3,})\{solution\}[^\n]*\n.*?^(?P=f)[ \t]*(\n|$)", re.M | re.S)


def sync_notebooks():
    """``scripts/sync_notebooks.py``, the chapter -> notebook converter, imported from beside this script."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import sync_notebooks as module
    finally:
        sys.path.pop(0)
    return module


def strip_solutions(nb) -> int:
    """Remove every exercise solution from a notebook (the student edition); returns how many.

    Handles ``{solution}`` blocks inside Markdown cells and gated solutions
    (``{solution-start}`` … ``{solution-end}``) that enclose code cells; Markdown cells left
    empty are dropped.
    """
    converter = sync_notebooks()
    removed = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source, n = SOLUTION.subn("", cell.source)
            removed += n + len(converter.GATE_START.findall(cell.source))
    nb.cells = converter.strip_gated(nb.cells)
    return removed


def staged_toc(names: list[str] | None = None) -> dict:
    """The table of contents the build renders: ``_toc.yml`` plus the generated exercise index and Runtime
    page and, for a preview, only the chapters ``names`` (one not in the table yet, a draft, goes into a
    "Drafts" part)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    toc["parts"][-1]["chapters"].append({"file": "book/exercises"})  # written by the build: write_exercise_index
    toc["parts"][-1]["chapters"].append({"file": "book/runtime"})  # written by the build: write_runtime_page
    if names is None:
        return toc
    listed = set()
    for part in toc["parts"]:
        part["chapters"] = [c for c in part["chapters"] if not c["file"].startswith("chapters/") or c["file"] in names]
        listed |= {c["file"] for c in part["chapters"]}
    toc["parts"] = [p for p in toc["parts"] if p["chapters"]]
    drafts = [{"file": n} for n in names if n not in listed]
    if drafts:
        toc["parts"].insert(-1, {"caption": "Drafts", "chapters": drafts})
    return toc


def stage_front_matter(stage: pathlib.Path, edition: str, toc: dict) -> None:
    """Copy the configuration, the table of contents ``toc`` and the front matter into ``stage``."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    if edition == "student":
        config["title"] += " (student edition)"
        # The Colab button opens the repository's notebooks, which hold every solution.
        config.pop("launch_buttons", None)
    put(stage / "_config.yml", yaml.safe_dump(config, sort_keys=False))
    put(stage / "_toc.yml", yaml.safe_dump(toc, sort_keys=False))
    sync_tree(ROOT / "book", stage / "book")
    sync_tree(ROOT / "book" / "_static", stage / "_static")  # the book's own CSS


def chapter_title(name: str) -> str:
    """The chapter's first heading, e.g. '1. The linear explanation of adversarial examples'."""
    for line in (ROOT / f"{name}.md").read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return name


def write_runtime_page(stage: pathlib.Path, runs: dict, profile: str, seed: int, jobs: int = 1) -> None:
    """book/runtime.md in ``stage``: each chapter's execution time and peak memory in this build
    (``jobs``: how many chapters executed at once)."""
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "not installed"
    rows = []
    for name, r in runs.items():
        memory = "—" if r["peak_mb"] is None else f"{r['peak_mb']:,} MB"
        rows.append(f"| {{doc}}`{chapter_title(name)} <../{name}>` | {r['seconds']:.0f} s | {memory} | "
                    f"{'reused' if r['reused'] else 'executed'} |")
    total = sum(r["seconds"] for r in runs.values())
    concurrency = ("Chapters executed one at a time." if jobs == 1 else
                   f"Chapters executed up to {jobs} at a time while their threads fit in the cores, so a time can "
                   "include sharing the machine with another chapter.")
    text = f"""# Runtime

What it took to execute the chapters of this edition: the **{profile}** profile, seed {seed}, on
{platform.system()} with {os.cpu_count()} logical CPUs, Python {platform.python_version()} and torch
{torch_version}. Each chapter runs from a clean kernel; the peak memory is that kernel's largest resident
set. {concurrency} A chapter whose code cells, the package modules they use, data, requirements, profile
and seed did not change since the previous build is *reused* (its outputs are kept, its prose is rebuilt), and
the table then shows the time and memory of the run that produced it.

| chapter | execution time | peak memory | in this build |
|---|---:|---:|---|
{chr(10).join(rows)}
| all chapters | {total:.0f} s | | |
"""
    put(stage / "book" / "runtime.md", text)


def exercise_index(names: list[str]) -> str:
    """book/exercises.md: every exercise of the chapters ``names`` in one table (chapter, exercise with
    its number and a link, kind of work, estimated time, checked automatically or not)."""
    from advcourse.grade import chapter_exercises

    rows, minutes, checked, count = [], 0, 0, 0
    for name in names:
        for ex in chapter_exercises((ROOT / f"{name}.md").read_text(), pathlib.Path(name).name):
            count += 1
            checked += ex.checked
            minutes += ex.minutes or 0
            number = chapter_title(name).split(".")[0]  # "1. The linear explanation …" -> "1"
            rows.append(f"| {{doc}}`{number} <../{name}>` | {{ref}}`{ex.label}`: {ex.title} | {ex.kind} | "
                        f"{f'{ex.minutes} min' if ex.minutes else '—'} | {'yes' if ex.checked else 'no'} |")
    total = f"{minutes / 60:.0f} hours" if minutes >= 120 else f"{minutes} minutes"
    return f"""# Exercise index

Every exercise of the book: {count} in all, {checked} of them checked automatically, about {total} of
work by the estimates below (the authors' guesses for a student who has read the chapter). An exercise
*checked automatically* has a checker in `advcourse.exercises` that takes the function the student writes;
`advcourse grade` runs it on submitted notebooks (see the README, "Grading a class"). The kind of work is a
derivation on paper, an implementation (the checked ones), an experiment on the chapter's models, or a
discussion.

| chapter | exercise | kind | time | checked automatically |
|---|---|---|---:|---|
{chr(10).join(rows)}
"""


# Appended to each notebook before execution and removed after: the kernel reports its peak memory.
PEAK_MARK = "advcourse-peak-rss-bytes"
PEAK_CELL = ("import resource, sys\n"
             f"print('{PEAK_MARK}', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss"
             " * (1 if sys.platform == 'darwin' else 1024))")  # ru_maxrss: bytes on macOS, KiB on Linux


def execute_notebook(source: pathlib.Path, target: pathlib.Path, profile: str, seed: int) -> dict:
    """Execute the MyST chapter ``source`` from a clean kernel into ``target`` (.ipynb).

    Returns ``{"seconds": wall time, "peak_mb": the kernel's peak resident memory or None}``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = target.with_suffix(".raw.ipynb")
    nb = jupytext.read(source)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL, metadata={"tags": ["remove-cell"]}))
    nbformat.write(nb, raw)
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
    nb = nbformat.read(target, as_version=4)
    peak = nb.cells.pop()  # the memory probe
    text = "".join(o.get("text", "") for o in peak.get("outputs", []))
    found = re.search(rf"{PEAK_MARK} (\d+)", text)
    # Hide papermill's injected-parameters cell in the HTML.
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, target)
    return {"seconds": round(seconds, 1), "peak_mb": round(int(found[1]) / 2**20) if found else None}


def environment_fingerprint(profile: str, seed: int) -> str:
    """A hash of what every chapter's outputs depend on besides its own code cells and the package
    modules it uses (:func:`package_fingerprint`): the embedded data, the requirements, the installed
    versions of the main libraries, the profile and the seed."""
    h = hashlib.sha256(f"profile={profile} seed={seed} python={platform.python_version()}".encode())
    for dist in ("torch", "torchvision", "numpy", "matplotlib", "tokenizers"):
        try:
            h.update(f"{dist}={importlib.metadata.version(dist)}".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{dist}=absent".encode())
    files = [*(ROOT / "data").rglob("*"), *ROOT.glob("requirements*.txt"), ROOT / "pyproject.toml"]
    for path in sorted(f for f in files if f.is_file()):
        h.update(path.relative_to(ROOT).as_posix().encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


PACKAGE = ROOT / "src" / "advcourse"


def module_file(name: str) -> pathlib.Path | None:
    """The source file of the advcourse module ``name`` (e.g. 'advcourse.attacks.pgd'), if any."""
    if name != "advcourse" and not name.startswith("advcourse."):
        return None
    path = PACKAGE.joinpath(*name.split(".")[1:])
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(code: str, package: str = "") -> set[str]:
    """The advcourse modules ``code`` imports anywhere (also inside functions), with the packages
    whose ``__init__`` runs on the way; ``package``: the importing module's package, for relative imports."""
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]  # `from pkg import module` too
        else:
            continue
        for name in names:
            parts = name.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {n for n in found if module_file(n)}


def package_fingerprint(code: str) -> str:
    """A hash of the source of every advcourse module that ``code`` (a chapter's code cells) uses,
    followed through their imports: editing a module re-executes only the chapters that use it."""
    todo, seen = sorted(imported_modules(code)), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo += sorted(imported_modules(path.read_text(), package) - seen)
    h = hashlib.sha256()
    for name in sorted(seen):
        h.update(name.encode())
        h.update(hashlib.sha256(module_file(name).read_bytes()).digest())
    return h.hexdigest()


def code_fingerprint(nb) -> str:
    """A hash of a notebook's code cells (sources and tags, in order); prose does not enter it."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(json.dumps([cell.source, cell.metadata.get("tags", [])]).encode())
    return h.hexdigest()


def with_new_prose(executed, source) -> nbformat.NotebookNode:
    """The executed notebook with its Markdown cells replaced by those of ``source``.

    ``source`` (the current chapter) has the same code cells as ``executed`` (the key says so);
    papermill's injected-parameters cell, which only ``executed`` has, stays after the parameters cell.
    """
    runs = [c for c in executed.cells if c.cell_type == "code"
            and "injected-parameters" not in c.metadata.get("tags", [])]
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    if len(runs) != sum(c.cell_type == "code" for c in source.cells):
        raise ValueError("the cached notebook's code cells do not match the source's")
    cells, runs = [], iter(runs)
    for cell in source.cells:
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        cells.append(next(runs))
        if "parameters" in cell.metadata.get("tags", []):
            cells.extend(injected)
    merged = nbformat.from_dict(executed)
    merged.cells = cells
    return merged


def execute_chapter(name: str, stage: pathlib.Path, profile: str, seed: int, cache: pathlib.Path | None = None,
                    environment: str = "", source: pathlib.Path | None = None) -> dict:
    """Execute chapters/<name>.md (or ``source``) into the staging folder, or reuse its cached run.

    With a ``cache`` folder, a run whose key (``environment``, the chapter's code cells and the package
    modules they use) is unchanged
    is reused with the current prose. Returns ``{"seconds", "peak_mb", "reused"}``: the time and
    memory of the execution (the cached one when reused).
    """
    source = source or ROOT / f"{name}.md"
    target = stage / f"{name}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(source)
    code = "\n".join(c.source for c in nb.cells  # magics and shell lines are not Python
                     if c.cell_type == "code" and not c.source.lstrip().startswith(("%", "!")))
    key = hashlib.sha256((environment + code_fingerprint(nb) + package_fingerprint(code)).encode()).hexdigest()
    stem = pathlib.Path(name).name
    record_path = cache / f"{stem}.json" if cache else None
    if record_path and record_path.exists():
        record = json.loads(record_path.read_text())
        if record.get("key") == key and (cache / f"{stem}.ipynb").exists():
            executed = nbformat.read(cache / f"{stem}.ipynb", as_version=4)
            put(target, nbformat.writes(with_new_prose(executed, nb)))
            return {"seconds": record["seconds"], "peak_mb": record["peak_mb"], "reused": True}
    record = execute_notebook(source, target, profile, seed)
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copy(target, cache / f"{stem}.ipynb")
        record_path.write_text(json.dumps({"key": key, **record}, indent=2))
    return {**record, "reused": False}


def longest_first(names: list[str], cache: pathlib.Path | None) -> list[str]:
    """``names`` ordered by how long each took in the last build (``cache``'s records), longest first;
    chapters with no record keep their order, after the others."""
    def last_seconds(name: str) -> float:
        record = cache / f"{pathlib.Path(name).name}.json" if cache else None
        return json.loads(record.read_text()).get("seconds", 0.0) if record and record.exists() else 0.0

    return sorted(names, key=last_seconds, reverse=True)  # sorted is stable


def threads_wanted(source: str, cores: int) -> int:
    """How many CPU threads the chapter with MyST text ``source`` gives torch: its ``advcourse.start(...,
    cpu_threads=n)``, or all ``cores`` when it keeps torch's default (``ADVCOURSE_CPU_THREADS``, which
    ``start`` obeys, overrides both). Never more than ``cores``."""
    if os.environ.get("ADVCOURSE_CPU_THREADS", "").isdigit():
        return max(1, min(int(os.environ["ADVCOURSE_CPU_THREADS"]), cores))
    found = re.search(r"advcourse\.start\([^)]*cpu_threads\s*=\s*(\d+)", source)
    return max(1, min(int(found[1]), cores)) if found else cores


def execute_chapters(names: list[str], stage: pathlib.Path, profile: str, seed: int, cache: pathlib.Path | None,
                     environment: str, jobs: int = 1, root: pathlib.Path = ROOT,
                     cores: int | None = None) -> dict:
    """Execute (or reuse) the chapters ``names`` (sources ``root/<name>.md``), up to ``jobs`` at a time.

    Returns {name: run record} in the order of ``names``. Each chapter runs in its own kernel, so chapters
    share no state; a model two of them need is cached atomically (trained twice if both start it at once,
    stored once). Chapters run side by side only while their torch threads (:func:`threads_wanted`) fit
    in the ``cores`` (default: the machine's): torch threads that outnumber the cores wait on each other
    at every operation, and a chapter's numbers depend on its thread count, which therefore stays what
    the chapter asks for. Among the chapters that fit, the longest of the last build starts first.
    """
    cores = cores or os.cpu_count() or 1
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")

    def one(name: str) -> dict:
        print(f"executing {name} (profile={profile}, seed={seed}) ...", flush=True)
        run = execute_chapter(name, stage, profile, seed, cache, environment, source=root / f"{name}.md")
        how = "reused: unchanged since it took" if run["reused"] else "executed in"
        print(f"  {name}: {how} {run['seconds']:.1f} s", flush=True)
        return run

    need = {n: threads_wanted((root / f"{n}.md").read_text(), cores) for n in names}
    pending, running, done, free = longest_first(names, cache), {}, {}, cores
    # papermill drives each kernel from a thread of ours; the work happens in the kernels' processes
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        while pending or running:
            for name in list(pending):  # start, in order, every chapter that fits now
                if len(running) < jobs and need[name] <= free:
                    pending.remove(name)
                    free -= need[name]
                    running[pool.submit(one, name)] = name
            finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                free += need[name]
                done[name] = future.result()  # a failed chapter stops the build (after those running)
    return {name: done[name] for name in names}


def student_stage(stage: pathlib.Path, student: pathlib.Path) -> None:
    """The student edition's sources: the full stage's table of contents and Runtime page, and its
    executed notebooks with every solution removed."""
    student.mkdir(parents=True, exist_ok=True)
    stage_front_matter(student, "student", yaml.safe_load((stage / "_toc.yml").read_text()))
    put(student / "book" / "runtime.md", (stage / "book" / "runtime.md").read_bytes())
    put(student / "book" / "exercises.md", (stage / "book" / "exercises.md").read_bytes())
    for stale in (student / "chapters").glob("*.ipynb"):
        if not (stage / "chapters" / stale.name).exists():
            stale.unlink()
    for nb_path in (stage / "chapters").glob("*.ipynb"):
        nb = nbformat.read(nb_path, as_version=4)
        strip_solutions(nb)
        (student / "chapters").mkdir(exist_ok=True)
        put(student / "chapters" / nb_path.name, nbformat.writes(nb))


def render(stage: pathlib.Path, html: pathlib.Path, strict: bool = True, edition: str = "full") -> None:
    """``jupyter-book build`` with execution off and (if ``strict``) warnings as errors, into ``html``."""
    site = stage.parent / f"{stage.name}-site"
    jupyter_book = pathlib.Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jupyter_book), "build", str(stage), "--path-output", str(site),
           "--builder", "html", "-n", "--keep-going", *(["-W"] if strict else [])]
    subprocess.run(cmd, check=True, env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    if html.exists():
        shutil.rmtree(html)
    html.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(site / "_build" / "html", html)  # the site folder stays: Sphinx's next build is incremental
    serve_readable_notebooks(html, edition)


def serve_readable_notebooks(html: pathlib.Path, edition: str) -> None:
    """Make the page's download button serve the notebook Colab opens, not the executed MyST one.

    Sphinx copies each executed notebook to ``_sources/chapters/<name>.ipynb``; its Markdown still
    holds raw MyST (glue roles, directives). It is replaced by ``colab_notebook`` of the chapter's
    source in this ``edition`` ("student": no solutions), which reads well in Jupyter and Colab.
    """
    colab_notebook = sync_notebooks().colab_notebook
    for served in (html / "_sources" / "chapters").glob("*.ipynb"):
        source = ROOT / "chapters" / f"{served.stem}.md"
        if source.exists():
            nbformat.write(colab_notebook(source, edition), served)


def build(out: pathlib.Path, profile: str, seed: int, editions: list[str], only: list[str] | None,
          force: bool = False, preview: bool = False, jobs: int = 1) -> dict:
    """Execute the chapters once (or reuse their cached runs), then render each edition
    ("full" → out/html, "student" → out/student/html). Returns {chapter: run record}.

    ``only``: execute just these chapters, and render nothing unless ``preview`` (then the book
    holds just them). ``jobs``: how many chapters execute at once."""
    # Kernels must use the inline backend so figures become outputs (Agg would swallow them).
    os.environ.pop("MPLBACKEND", None)
    # The staging folder is kept between builds and only changed files are rewritten, so that
    # Sphinx re-renders only the pages that changed.
    stage = out / "stage"
    stage.mkdir(parents=True, exist_ok=True)
    names = chapters_in_toc()
    if only:  # any chapter source, also one not yet in the table of contents (a draft)
        missing = [n for n in only if not (ROOT / "chapters" / f"{n}.md").exists()]
        if missing:
            raise SystemExit(f"--chapters: no chapters/<name>.md for {missing}")
        names = [f"chapters/{n}" for n in only]
    stage_front_matter(stage, "full", staged_toc(names if only else None))
    for stale in (stage / "chapters").glob("*.ipynb"):  # e.g. left by a preview of other chapters
        if f"chapters/{stale.stem}" not in names:
            stale.unlink()
    cache = None if force else out / "exec-cache"
    environment = environment_fingerprint(profile, seed)
    runs = execute_chapters(names, stage, profile, seed, cache, environment, jobs)
    if only and not preview:
        return runs
    (out / "execution_times.json").write_text(json.dumps(
        {"profile": profile, "seed": seed, "seconds": {n: r["seconds"] for n, r in runs.items()},
         "peak_mb": {n: r["peak_mb"] for n, r in runs.items()},
         "reused": [n for n, r in runs.items() if r["reused"]]}, indent=2))
    write_runtime_page(stage, runs, profile, seed, jobs)
    put(stage / "book" / "exercises.md", exercise_index(names))
    if "student" in editions:
        student_stage(stage, out / "stage-student")
    where = {"full": (stage, out / "html"), "student": (out / "stage-student", out / "student" / "html")}
    # The editions render in separate Sphinx processes, side by side. A preview's references to chapters
    # it leaves out cannot resolve: there they are only warnings.
    with concurrent.futures.ThreadPoolExecutor(max(1, len(editions))) as pool:
        list(pool.map(lambda e: render(*where[e], strict=not only, edition=e), editions))
    print("\nchapter execution times (s):")
    for name, r in runs.items():
        print(f"  {r['seconds']:8.1f}  {name}{'  (reused)' if r['reused'] else ''}")
    print(f"  {sum(r['seconds'] for r in runs.values()):8.1f}  in all")
    for edition in editions:
        print(f"{edition} edition: {out / ('html' if edition == 'full' else 'student/html') / 'index.html'}")
    return runs


def default_jobs() -> int:
    """Two chapters at a time where there are two cores or more: most chapters pin torch to one thread,
    so a second core would sit idle (:func:`execute_chapters` runs a chapter that wants more alone)."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "_build"), help="output folder (default _build)")
    parser.add_argument("--profile", default="fast", choices=["auto", "fast", "full"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--editions", nargs="+", default=["full"], choices=["full", "student"],
                        help="which editions to render from one execution (student: without solutions)")
    parser.add_argument("--chapters", nargs="*", help="only execute these chapters (no HTML build)")
    parser.add_argument("--force", action="store_true",
                        help="execute every chapter, even those whose cached run is still valid")
    parser.add_argument("--preview", action="store_true",
                        help="with --chapters: also render a book of just those chapters (drafts included)")
    parser.add_argument("--jobs", type=int, default=default_jobs(),
                        help="chapters executed at once (default: %(default)s, from the number of CPU cores)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.preview and not args.chapters:
        parser.error("--preview needs --chapters")
    build(pathlib.Path(args.out).resolve(), args.profile, args.seed, args.editions, args.chapters, args.force,
          args.preview, args.jobs)


if __name__ == "__main__":
    main()
