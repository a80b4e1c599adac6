"""Grade a class: execute the students' notebooks and run the automatic checkers on their answers.

``advcourse grade SUBMISSIONS…`` executes each submitted notebook with papermill from a clean kernel,
in its own kernel process and its own temporary working folder, with a time limit per notebook, then
runs the checker of every exercise marked "checked automatically" on the function the student
defined, and writes ``grades.csv`` and ``grades.md`` (one row per student, one column per checked
exercise with the checker's verdict and message). A broken, hanging or crashing submission gets a
row that says what happened; the grader itself never runs a student's code.

The protocol, from the chapter source to the report:

1. A checked exercise's solution in ``chapters/*.md`` calls its checker on the function it defines,
   e.g. ``check_linear_worst_case(worst_case)``: that names the checker and the *answer* (the name the
   student must define). :func:`chapter_exercises` reads them from the source.
2. The student edition (``make student-notebooks``) puts an *answer cell* after each checked
   exercise: a stub ``def worst_case(w, b, x, y, eps): raise NotImplementedError`` for the student to
   fill in, and records the chapter in the notebook's metadata.
3. The grader appends one cell of its own to a copy of the submission and executes the whole notebook
   (errors in the student's cells do not stop it). That cell loads a fresh copy of each checker module
   (a checker the notebook redefined or patched is not the one used), calls each checker on the
   student's answer under its own time limit, and prints the verdicts as JSON after a secret drawn
   anew for each submission. Only that output, found by the secret, counts: a student who prints
   "PASS", writes a results file or defines a fake checker changes nothing. (Code that deliberately
   tampers with the kernel itself (patches torch or ``print``, hooks IPython) could still fake a verdict; it is
   in plain sight in the submission.)

Submissions are code that runs with the grader's rights: grade untrusted work in a container or VM.
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import json
import os
import pathlib
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

from .report import MarkdownTable

CHECKED_MARK = "(checked automatically)"
EXERCISE = re.compile(r"^(?P<f>`{3,}|:{3,})\{exercise\}[ \t]*(?P<title>[^\n]*)\n(?P<body>.*?)^(?P=f)[ \t]*$",
                      re.M | re.S)
OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>[^\n]*)$", re.M)
CODE_CELL = re.compile(r"^(?P<f>`{3,})\{code-cell\}[^\n]*\n(?P<code>.*?)^(?P=f)[ \t]*$", re.M | re.S)
KINDS = ("derivation", "implementation", "experiment", "discussion")
DERIVATION = re.compile(r"\b(show|prove|derive|compute|calculate|what is)\b", re.I)


@dataclasses.dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter, as written in its ``{exercise}`` directive.

    ``checker``/``answer``/``signature`` are set for checked exercises only: the name of the checker in
    ``advcourse.exercises``, the name the student defines and its parameters (e.g. ``"w, b, x, y, eps"``).
    """

    chapter: str
    label: str
    title: str
    checked: bool
    minutes: int | None
    kind: str
    checker: str | None = None
    answer: str | None = None
    signature: str | None = None


def solution_code(text: str, label: str) -> list[str]:
    """The code cells of the gated solution (``{solution-start}`` … ``{solution-end}``) of ``label``."""
    start = re.search(rf"^(`{{3,}}|:{{3,}})\{{solution-start\}}[ \t]+{re.escape(label)}[ \t]*\n.*?^\1[ \t]*$",
                      text, re.M | re.S)
    if not start:
        return []
    end = re.compile(r"^(`{3,}|:{3,})\{solution-end\}", re.M).search(text, start.end())
    region = text[start.end():end.start() if end else len(text)]
    return [m["code"] for m in CODE_CELL.finditer(region)]


def checker_call(code: str) -> tuple[str, str, str] | None:
    """(checker, answer, signature) from a solution cell that calls ``check_…(answer)`` on a function it
    defines, e.g. ("check_fgsm", "my_fgsm", "model, x, y, eps"); None if it has no such call."""
    tree = ast.parse(code)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("check_")
                and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in functions):
            return node.func.id, node.args[0].id, ast.unparse(functions[node.args[0].id].args)
    return None


def chapter_exercises(text: str, chapter: str) -> list[Exercise]:
    """Every ``{exercise}`` of a chapter's MyST source ``text``, in order.

    An exercise is *checked* when its title ends with "(checked automatically)"; its solution must then
    call the checker on the function it defines (a ``ValueError`` says which exercise does not).
    ``:class: minutes-N <kind>`` gives the estimated time and the kind of work (one of :data:`KINDS`); without a
    kind it is read from the exercise: "implementation" (checked), "experiment" (the solution runs code),
    "derivation" (it asks to show, prove, derive or compute), else "discussion".
    """
    found = []
    for m in EXERCISE.finditer(text):
        options = {o["key"]: o["value"].strip() for o in OPTION.finditer(m["body"].split("\n\n")[0])}
        label = options.get("label")
        if not label:
            raise ValueError(f"{chapter}: the exercise {m['title']!r} has no :label:")
        minutes = re.search(r"\bminutes-(\d+)\b", options.get("class", ""))
        title = m["title"].strip()
        checked = title.endswith(CHECKED_MARK)
        code = solution_code(text, label)
        call = next(filter(None, map(checker_call, code)), None)
        if checked and call is None:
            raise ValueError(f"{chapter}: exercise {label} is checked automatically, but its solution calls no "
                             "check_…(answer) on a function it defines")
        kind = next((k for k in options.get("class", "").split() if k in KINDS), None) or (
            "implementation" if checked else "experiment" if code
            else "derivation" if DERIVATION.search(m["body"]) else "discussion")
        found.append(Exercise(chapter, label, title.removesuffix(CHECKED_MARK).strip(), checked,
                              int(minutes[1]) if minutes else None, kind, *(call if checked else (None,) * 3)))
    return found


def find_chapters(folder: str | os.PathLike | None = None) -> pathlib.Path:
    """The folder of chapter sources: ``folder``, else ``./chapters``, else the checkout's ``chapters``."""
    candidates = [pathlib.Path(folder)] if folder else [pathlib.Path("chapters"),
                                                         pathlib.Path(__file__).resolve().parents[2] / "chapters"]
    for path in candidates:
        if any(path.glob("*.md")):
            return path
    raise SystemExit(f"--chapters: no chapter sources (*.md) in {', '.join(map(str, candidates))}")


# ----------------------------------------------------------------------------------------------------
# The student edition's answer cells

def answer_cell_source(ex: Exercise) -> str:
    """The stub the student edition puts after a checked exercise."""
    return (f"# Your answer ({ex.title}): define {ex.answer} here. `advcourse grade`\n"
            f"# calls {ex.checker}({ex.answer}) on it; you can too.\n"
            f"def {ex.answer}({ex.signature}):\n"
            f"    raise NotImplementedError(\"your answer\")\n")


def _exercise_end(text: str, ex: Exercise) -> int:
    """Where exercise ``ex`` ends in a Markdown cell's ``text``: its closing fence (MyST) or, in plain
    Markdown, the next heading after its title (a cell may hold several exercises)."""
    for m in EXERCISE.finditer(text):
        if f":label: {ex.label}" in m["body"]:
            return m.end()
    start = text.find(ex.title)
    heading = re.compile(r"^#{1,6} ", re.M).search(text, start + len(ex.title)) if start >= 0 else None
    return heading.start() if heading else len(text)


def add_answer_cells(nb, exercises: list[Exercise], chapter: str) -> int:
    """Put an answer cell after each checked exercise of the notebook ``nb`` (found by its label or, in
    a notebook rendered to plain Markdown, its title) and record ``chapter`` in the notebook's
    metadata. Returns how many cells were added; a ``ValueError`` names an exercise not found."""
    import nbformat

    added = 0
    for ex in (e for e in exercises if e.checked):
        prose = [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"]
        # By its label; else by its title, in the last cell that has it (the prose may cite it earlier).
        where = [i for i, s in prose if f":label: {ex.label}" in s] or [i for i, s in prose if ex.title in s][-1:]
        if not where:
            raise ValueError(f"{chapter}: exercise {ex.label} ({ex.title!r}) is not in the notebook")
        cell = nbformat.v4.new_code_cell(answer_cell_source(ex), metadata={"tags": ["answer"],
                                                                           "advcourse": {"answer": ex.label}})
        prose_cell = nb.cells[where[0]]
        end = _exercise_end(prose_cell.source, ex)
        rest = prose_cell.source[end:].strip("\n")
        prose_cell.source = prose_cell.source[:end].rstrip("\n")
        nb.cells[where[0] + 1:where[0] + 1] = [cell] + ([nbformat.v4.new_markdown_cell(rest)] if rest else [])
        added += 1
    nb.metadata["advcourse"] = {"chapter": chapter, "edition": "student"}
    return added


# ----------------------------------------------------------------------------------------------------
# Grading one submission

# Appended by the grader and executed after the student's cells (followed by the call that passes the
# secret, the checks and the time limit). Its one name starts with "_advcourse_" so as not to clobber the student's.
CHECK_CELL = '''\
# advcourse grade: the grader's check (not part of the submission)
def _advcourse_grade(secret, checks, seconds, namespace):
    import importlib.util, json, signal, sys, traceback

    def alarm(signum, frame):
        raise TimeoutError(f"the checker took longer than {seconds} s")

    verdicts = {}
    for label, module, checker, answer in checks:
        try:
            if answer not in namespace or not callable(namespace[answer]):
                verdicts[label] = ["missing", f"no function {answer} defined"]
                continue
            spec = importlib.util.find_spec(module)  # a fresh copy of the checker, whatever the notebook did
            fresh = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(fresh)
            if hasattr(signal, "SIGALRM"):
                signal.signal(signal.SIGALRM, alarm)
                signal.alarm(seconds)
            try:
                verdicts[label] = ["pass", str(getattr(fresh, checker)(namespace[answer]))]
            finally:
                if hasattr(signal, "SIGALRM"):
                    signal.alarm(0)
        except NotImplementedError:
            verdicts[label] = ["not answered", f"{answer} still raises NotImplementedError"]
        except AssertionError as why:
            verdicts[label] = ["fail", str(why)]
        except BaseException as why:  # anything the answer raises, also SystemExit and KeyboardInterrupt
            verdicts[label] = ["error", "".join(traceback.format_exception_only(type(why), why)).strip()]
    sys.stdout.write(secret + json.dumps(verdicts) + "\\n")
    sys.stdout.flush()

'''


def check_cell_source(exercises: list[Exercise], secret: str, seconds: int) -> str:
    """The grader's cell for the checked ``exercises``: verdicts as JSON after ``secret`` on stdout."""
    import advcourse.exercises as checkers

    checks = []
    for ex in exercises:
        if ex.checker not in checkers.__all__:
            raise ValueError(f"{ex.label}: {ex.checker} is not a checker of advcourse.exercises")
        checks.append((ex.label, getattr(checkers, ex.checker).__module__, ex.checker, ex.answer))
    return CHECK_CELL + f"\n_advcourse_grade({secret!r}, {checks!r}, {seconds!r}, globals())\ndel _advcourse_grade\n"


# Run in a child process: papermill drives a fresh kernel (yet another process) in the working folder.
WORKER = """\
import json, sys
import papermill
from papermill.exceptions import PapermillExecutionError
source, target, cwd, kernel, status = sys.argv[1:6]
try:
    papermill.execute_notebook(source, target, cwd=cwd, kernel_name=kernel, progress_bar=False, log_output=False,
                               allow_errors=True)
    result = {"state": "ok"}
except PapermillExecutionError:
    result = {"state": "ok"}  # cells raised errors; every cell ran, the executed notebook says which
except BaseException as why:  # a dead kernel, a kernel that does not start, ...
    result = {"state": "crashed", "error": f"{type(why).__name__}: {why}".strip()}
with open(status, "w") as f:
    json.dump(result, f)
"""


@dataclasses.dataclass
class Result:
    """One submission's row: ``status`` says how its notebook ran, ``verdicts`` maps an exercise label to
    [state, message] with state one of pass, fail, error, missing, not answered, not run."""

    student: str
    chapter: str
    status: str
    seconds: float
    verdicts: dict


def _kill_tree(pid: int) -> None:
    """Kill a process and all its descendants (the kernel runs in a session of its own)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        family = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)


def _cell_errors(nb) -> list[str]:
    """'cell 7: NameError: name 'x' is not defined' for each code cell of the executed notebook that raised."""
    errors = []
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"code cell {i + 1}: {out.get('ename')}: {out.get('evalue')}".strip())
    return errors


def _running_cell(nb) -> str:
    """Which code cell papermill recorded as running (or failing) when execution stopped."""
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        if cell.metadata.get("papermill", {}).get("status") in ("running", "failed"):
            return f" in code cell {i + 1}"
    return ""


def notebook_chapter(nb, default: str | None) -> str | None:
    """The chapter the student edition recorded in the notebook's metadata, else ``default``."""
    meta = nb.metadata.get("advcourse", {})
    return default or (meta.get("chapter") if isinstance(meta, dict) else None)


def grade_submission(path: pathlib.Path, student: str, exercises: dict[str, list[Exercise]],
                     chapter: str | None = None, timeout: float = 600, check_seconds: int = 60,
                     kernel: str = "python3", keep: pathlib.Path | None = None) -> Result:
    """Execute the notebook ``path`` in a fresh kernel and temporary folder and check its answers.

    ``exercises``: each chapter's checked exercises; ``chapter``: the chapter to grade it against (else
    the one in its metadata); ``timeout``: seconds for the whole notebook; ``check_seconds``: for each
    checker; ``keep``: a file to copy the executed notebook to. Never raises on a bad submission.
    """
    import nbformat

    start = time.perf_counter()

    def result(status, chapter_name="", verdicts=None):
        return Result(student, chapter_name, status, round(time.perf_counter() - start, 1), verdicts or {})

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as why:  # a missing file, not JSON, not a notebook
        return result(f"not a readable notebook: {type(why).__name__}: {why}")
    name = notebook_chapter(nb, chapter)
    if name not in exercises:
        return result(f"unknown chapter {name!r}: the notebook does not say (pass --chapter)" if name is None
                      else f"unknown chapter {name!r}", name or "")
    checked = exercises[name]
    not_run = {ex.label: ["not run", ""] for ex in checked}
    secret = secrets.token_hex(16)
    for cell in nb.cells:  # a clean run: no stale outputs
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.cells.append(nbformat.v4.new_code_cell(check_cell_source(checked, secret, check_seconds),
                                              metadata={"tags": ["advcourse-grade"]}))
    with tempfile.TemporaryDirectory(prefix="advcourse-grade-") as tmp:
        work = pathlib.Path(tmp)
        source, target, status_file = work / "submission.ipynb", work / "executed.ipynb", work / "status.json"
        nbformat.write(nb, source)
        cmd = [sys.executable, "-c", WORKER, str(source), str(target), str(work), kernel, str(status_file)]
        worker = subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        try:
            _, stderr = worker.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_tree(worker.pid)
            _, stderr = worker.communicate()
            timed_out = True
        executed = nbformat.read(target, as_version=4) if target.exists() else None
        if keep and executed is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(target, keep)
        state = json.loads(status_file.read_text()) if status_file.exists() else None
    if timed_out:
        where = _running_cell(executed) if executed is not None else ""
        return result(f"time-out: stopped after {timeout:g} s{where}", name, not_run)
    if state is None:
        return result(f"the grader's worker failed: {stderr.strip()[-300:]}", name, not_run)
    if state["state"] != "ok":
        where = _running_cell(executed) if executed is not None else ""
        why = " (the kernel process died: os._exit, a crash or out of memory)" if "DeadKernel" in state["error"] else ""
        return result(f"crashed{where}: {state['error']}{why}", name, not_run)
    check = executed.cells.pop()
    text = "".join(o.get("text", "") for o in check.get("outputs", []) if o.get("name") == "stdout")
    found = re.findall(rf"^{secret}(.*)$", text, re.M)
    if len(found) > 1:  # something in the kernel saw the cell and forged a second verdict line
        return result("the grader's check was tampered with: it reported more than once", name, not_run)
    if not found:
        return result("the grader's check did not report: " + (_cell_errors(nbformat.v4.new_notebook(cells=[check]))
                                                              or ["no output"])[0], name, not_run)
    errors = _cell_errors(executed)
    status = "ran" if not errors else f"ran; {len(errors)} cell(s) raised, first {errors[0]}"
    return result(status, name, json.loads(found[0]))


# ----------------------------------------------------------------------------------------------------
# Reports

def _one_line(text: str, width: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def report_rows(results: list[Result], exercises: dict[str, list[Exercise]]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: student, chapter, notebook status, passed, seconds, one column per checked
    exercise ('pass: <message>', 'fail: <message>', …; empty for another chapter's exercise)."""
    chapters = sorted({r.chapter for r in results if r.chapter in exercises})
    columns = [ex for ch in chapters for ex in exercises[ch]]
    headers = ["student", "chapter", "notebook", "passed", "seconds"] + [ex.label for ex in columns]
    rows = []
    for r in results:
        own = exercises.get(r.chapter, [])
        passed = sum(r.verdicts.get(ex.label, [""])[0] == "pass" for ex in own)
        cells = []
        for ex in columns:
            if ex.chapter != r.chapter:
                cells.append("")
                continue
            state, message = r.verdicts.get(ex.label, ["not run", "the grader's check did not report it"])
            cells.append(f"{state}: {_one_line(message)}" if message else state)
        rows.append([r.student, r.chapter, _one_line(r.status, 300), f"{passed}/{len(own)}" if own else "",
                     f"{r.seconds:.1f}"] + cells)
    return headers, rows


def write_reports(results: list[Result], exercises: dict[str, list[Exercise]], out: pathlib.Path) -> None:
    """``out/grades.csv`` and ``out/grades.md`` (with a key naming each exercise column)."""
    headers, rows = report_rows(results, exercises)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "grades.csv", "w", newline="") as f:
        csv.writer(f).writerows([headers, *rows])
    key = [f"- `{ex.label}`: {ex.title} (chapter {ex.chapter}; answer `{ex.answer}`, checker `{ex.checker}`)"
           for label in headers[5:] for ex in (e for es in exercises.values() for e in es) if ex.label == label]
    md = ["# Grades", "", MarkdownTable(headers, rows).to_markdown(), "", "Exercises:", "", *key, ""]
    (out / "grades.md").write_text("\n".join(md))


def student_name(path: pathlib.Path, paths: list[pathlib.Path]) -> str:
    """A submission's row name: its file name without .ipynb, or folder/name when two files share a name."""
    if sum(p.stem == path.stem for p in paths) > 1:
        return f"{path.parent.name}/{path.stem}"
    return path.stem


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="advcourse grade", description="Execute student notebooks and run the exercise checkers on their "
        "answers; writes grades.csv and grades.md. Submissions run with your rights: grade untrusted work in a "
        "container or VM.")
    parser.add_argument("submissions", nargs="+", type=pathlib.Path, help="the students' .ipynb files")
    parser.add_argument("--chapter", help="grade every submission against this chapter, e.g. 01_linear_explanation "
                        "(default: the chapter recorded in each notebook by the student edition)")
    parser.add_argument("--chapters", help="folder of the chapter sources (default: ./chapters or the checkout's)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for each notebook (default 600)")
    parser.add_argument("--check-timeout", type=int, default=60, help="seconds for each checker (default 60)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("grades"),
                        help="folder for grades.csv, grades.md and the executed notebooks (default ./grades)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel to run the notebooks (default python3)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.timeout <= 0 or args.check_timeout <= 0:
        parser.error("--timeout and --check-timeout must be positive")
    folder = find_chapters(args.chapters)
    exercises = {md.stem: [e for e in chapter_exercises(md.read_text(), md.stem) if e.checked]
                 for md in sorted(folder.glob("*.md"))}
    if args.chapter and args.chapter not in exercises:
        parser.error(f"--chapter: no chapter {args.chapter!r} in {folder}")
    from tqdm.auto import tqdm

    results = []
    for i, path in enumerate(tqdm(args.submissions, desc="grading", unit="notebook", disable=args.quiet)):
        name = student_name(path, args.submissions)
        keep = args.out / "executed" / f"{i + 1:03d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.ipynb"
        try:
            results.append(grade_submission(path, name, exercises, args.chapter, args.timeout, args.check_timeout,
                                            args.kernel, keep))
        except Exception as why:  # a case the grader did not foresee: a row saying so, and on to the next
            results.append(Result(name, "", f"the grader failed on this notebook: {type(why).__name__}: {why}", 0.0,
                                  {}))
    write_reports(results, exercises, args.out)
    print(f"graded {len(results)} notebook(s): {args.out / 'grades.csv'}, {args.out / 'grades.md'}")
    return 0


def cli() -> None:
    """The ``advcourse`` console script: ``advcourse grade …``."""
    argv = sys.argv[1:]
    if not argv or argv[0] != "grade":
        sys.exit("usage: advcourse grade SUBMISSIONS… (advcourse grade --help)")
    sys.exit(main(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
