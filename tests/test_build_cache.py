"""The book build's execution cache: a prose edit reuses a chapter's run, anything else re-executes it."""

import importlib.util
import pathlib

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
build_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_book)

CHAPTER = '''---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# 0. A tiny chapter

```{code-cell} ipython3
:tags: [parameters]

profile = "auto"
seed = 0
```

PROSE

```{code-cell} ipython3
import random

print(profile, seed, random.random())  # a fresh number on every execution
```
'''


def printed(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.fixture
def chapter(tmp_path):
    source = tmp_path / "tiny.md"

    def run(prose="First words.", code_tail="", environment="env-1"):
        source.write_text(CHAPTER.replace("PROSE", prose).replace("# a fresh", f"{code_tail}# a fresh"))
        record = build_book.execute_chapter("chapters/tiny", tmp_path / "stage", "fast", 3, tmp_path / "cache",
                                            environment, source=source)
        return record, nbformat.read(tmp_path / "stage" / "chapters" / "tiny.ipynb", as_version=4)

    return run


def test_prose_edits_reuse_the_run_and_everything_else_reexecutes(chapter):
    first, nb1 = chapter()
    assert not first["reused"] and first["seconds"] > 0
    assert first["peak_mb"] is None or first["peak_mb"] > 10        # a Python kernel with its imports
    assert "fast 3 0." in printed(nb1)                               # the parameters were injected
    assert not any(build_book.PEAK_MARK in c.source for c in nb1.cells)   # the memory probe is removed

    second, nb2 = chapter(prose="Better words.")
    assert second["reused"] and second["seconds"] == first["seconds"]
    assert printed(nb2) == printed(nb1)                              # the same outputs, not a new run
    text = "".join(c.source for c in nb2.cells if c.cell_type == "markdown")
    assert "Better words." in text and "First words." not in text    # with the new prose
    injected = [i for i, c in enumerate(nb2.cells) if "injected-parameters" in c.metadata.get("tags", [])]
    params = [i for i, c in enumerate(nb2.cells) if "parameters" in c.metadata.get("tags", [])]
    assert injected == [params[0] + 1]                               # papermill's cell stays in place

    third, nb3 = chapter(prose="Better words.", code_tail="  ")     # a code cell changed
    assert not third["reused"] and printed(nb3) != printed(nb1)
    fourth, nb4 = chapter(prose="Better words.", code_tail="  ", environment="env-2")  # package, data, ...
    assert not fourth["reused"] and printed(nb4) != printed(nb3)


def test_the_environment_fingerprint_follows_profile_seed_and_package():
    base = build_book.environment_fingerprint("fast", 0)
    assert build_book.environment_fingerprint("fast", 0) == base
    assert build_book.environment_fingerprint("full", 0) != base
    assert build_book.environment_fingerprint("fast", 1) != base


def test_code_fingerprint_ignores_prose_and_sees_tags():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("a"), nbformat.v4.new_code_cell("x = 1")])
    key = build_book.code_fingerprint(nb)
    nb.cells[0].source = "b"
    assert build_book.code_fingerprint(nb) == key
    nb.cells[1].metadata["tags"] = ["remove-input"]
    assert build_book.code_fingerprint(nb) != key


def test_a_cached_run_that_does_not_match_the_source_is_refused():
    executed = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    source = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("y")])
    with pytest.raises(ValueError, match="code cells"):
        build_book.with_new_prose(executed, source)


def test_a_chapter_depends_only_on_the_package_modules_it_uses():
    found = build_book.imported_modules("from advcourse.attacks import fgsm\nimport advcourse.report as r")
    assert {"advcourse", "advcourse.attacks", "advcourse.attacks.fgsm", "advcourse.report"} <= found
    assert build_book.imported_modules("from ..evaluate import logits", "advcourse.attacks") == {
        "advcourse", "advcourse.evaluate"}                           # relative imports resolved
    assert build_book.imported_modules("import numpy\nfrom os import path") == set()
    # through the imports: chapter 7's module uses the ResNet file, not chapter 3's experiments
    ch07 = "from advcourse.experiments import ch07_resnet"
    key = build_book.package_fingerprint(ch07)
    assert key != build_book.package_fingerprint("from advcourse.experiments import ch03_lbfgs_blind_spots")
    assert key == build_book.package_fingerprint(ch07 + "\nimport torch")


def test_editing_a_used_module_changes_the_fingerprint(tmp_path, monkeypatch):
    package = tmp_path / "advcourse"
    (package / "experiments").mkdir(parents=True)
    (package / "__init__.py").write_text("from .runtime import start\n")
    (package / "runtime.py").write_text("def start(): ...\n")
    (package / "unused.py").write_text("x = 1\n")
    (package / "experiments" / "__init__.py").write_text("")
    (package / "experiments" / "chxx.py").write_text("def run(): from ..runtime import start\n")
    monkeypatch.setattr(build_book, "PACKAGE", package)
    code = "from advcourse.experiments import chxx"
    before = build_book.package_fingerprint(code)
    (package / "unused.py").write_text("x = 2\n")
    assert build_book.package_fingerprint(code) == before
    (package / "runtime.py").write_text("def start(): return 1\n")   # reached by a lazy relative import
    assert build_book.package_fingerprint(code) != before


def test_chapters_execute_side_by_side_while_their_threads_fit(tmp_path, monkeypatch):
    monkeypatch.delenv("ADVCOURSE_CPU_THREADS", raising=False)
    names = [f"chapters/c{i}" for i in range(3)]
    (tmp_path / "chapters").mkdir()
    starts = ['advcourse.start("fast", 0, cpu_threads=1)', 'advcourse.start("fast", 0, cpu_threads=1)',
              'advcourse.start("fast", 0)']  # the last keeps torch's default: all cores
    for i, (name, start) in enumerate(zip(names, starts)):  # each chapter notes when it ran
        note = str(tmp_path / f"c{i}.t")
        tail = (f"import advcourse, time; run = {start}; t0 = time.time(); time.sleep(3)\n"
                f"open({note!r}, 'w').write(f'{{t0}} {{time.time()}}')\n")
        (tmp_path / f"{name}.md").write_text(CHAPTER.replace("PROSE", f"Chapter {i}.")
                                             .replace("print(profile", f"{tail}print(profile"))
    runs = build_book.execute_chapters(names, tmp_path / "stage", "fast", 0, tmp_path / "cache", "env", jobs=2,
                                       root=tmp_path, cores=2)
    assert list(runs) == names and not any(r["reused"] for r in runs.values())
    (a0, b0), (a1, b1), (a2, _) = (tuple(map(float, (tmp_path / f"c{i}.t").read_text().split())) for i in range(3))
    assert a0 < b1 and a1 < b0           # the one-thread chapters ran at the same time
    assert a2 >= max(b0, b1)             # the all-cores chapter waited for both
    assert all((tmp_path / "stage" / f"{n}.ipynb").exists() for n in names)
    with pytest.raises(ValueError, match="jobs"):
        build_book.execute_chapters(names, tmp_path / "stage", "fast", 0, None, "env", jobs=0, root=tmp_path)


def test_threads_wanted_reads_the_chapters_start_call(monkeypatch):
    monkeypatch.delenv("ADVCOURSE_CPU_THREADS", raising=False)
    wanted = build_book.threads_wanted
    assert wanted("run = advcourse.start(profile, seed, cpu_threads=1)  # tiny models", 2) == 1
    assert wanted("run = advcourse.start(profile, seed, cpu_threads=4)", 2) == 2   # never more than the cores
    assert wanted("run = advcourse.start(profile, seed)", 8) == 8                   # torch's default: all
    monkeypatch.setenv("ADVCOURSE_CPU_THREADS", "1")
    assert wanted("run = advcourse.start(profile, seed)", 8) == 1                   # the override wins


def test_the_longest_chapters_of_the_last_build_start_first(tmp_path):
    names = ["chapters/a", "chapters/b", "chapters/c", "chapters/d"]
    for stem, seconds in {"b": 10.0, "d": 300.0}.items():
        (tmp_path / f"{stem}.json").write_text(f'{{"key": "k", "seconds": {seconds}}}')
    assert build_book.longest_first(names, tmp_path) == ["chapters/d", "chapters/b", "chapters/a", "chapters/c"]
    assert build_book.longest_first(names, None) == names
