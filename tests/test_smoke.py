"""The smoke profile: every chapter's full-profile code path, executed on a CPU in seconds.

The full profile is what a Colab GPU runs (``profile="auto"`` there). The smoke profile takes the same
branches — ``run.full`` is True, the full recipes and data path — with the work capped
(``Settings.smoke()``), the downloads off (the embedded fallback runs) and models trained into a
throw-away cache. The chapters run here, two at a time, from clean kernels via papermill; a shape
error, a crash in the offline fallback or a full-profile-only cell that no longer runs fails CI
instead of a student's session.
"""

import concurrent.futures
import dataclasses
import importlib
import importlib.util
import os
import pathlib
import re

import pytest
import torch

import advcourse
from advcourse import data, runtime

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("[0-9][0-9]_*.md"))
MODULES = sorted(p.stem for p in (ROOT / "src" / "advcourse" / "experiments").glob("ch[0-9][0-9]_*.py"))
FALLBACK = "advcourse: could not download full"


@pytest.fixture
def restore_state():
    """start() sets process-wide state (seeds, threads, the smoke data mode and cache); put it back."""
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cache = os.environ.get("ADVCOURSE_CACHE")
    yield
    runtime._smoke_mode(False)
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    assert os.environ.get("ADVCOURSE_CACHE") == cache


def test_smoke_run_takes_the_full_branches_with_capped_settings(restore_state, monkeypatch):
    from advcourse.experiments import ch04_pgd_saddle_point as sp

    monkeypatch.delenv("ADVCOURSE_PROFILE", raising=False)
    run = advcourse.start("smoke", seed=1, device="cpu")
    assert run.profile == "smoke" and run.full and run.smoke
    assert run.pick(fast=sp.FAST, full=sp.FULL) == sp.FULL.smoke()
    assert run.pick(fast=300, full=10_000) == 300            # numbers: the smaller
    assert run.pick(fast=300, full=10_000, smoke=7) == 7     # or what the chapter says
    assert run.pick(fast="a", full="b") == "b"                # anything else: the full value
    assert run.stamp.profile == "smoke"
    fast = advcourse.start("fast", device="cpu")
    assert not fast.full and not fast.smoke and fast.pick(fast=sp.FAST, full=sp.FULL) == sp.FAST
    assert advcourse.start("full", device="cpu").pick(fast=sp.FAST, full=sp.FULL) == sp.FULL


def test_smoke_models_go_to_a_throwaway_cache(restore_state, tmp_path, monkeypatch):
    """Smoke models are trained on a few hundred examples under the full profile's settings: they must
    never be written where a fast or full run looks for its models."""
    monkeypatch.setenv("ADVCOURSE_CACHE", str(tmp_path))
    monkeypatch.delenv("ADVCOURSE_SMOKE_CACHE", raising=False)
    advcourse.start("smoke", device="cpu")
    smoke_cache = pathlib.Path(os.environ["ADVCOURSE_CACHE"])
    assert smoke_cache != tmp_path and smoke_cache.is_dir() and not any(smoke_cache.iterdir())
    advcourse.start("smoke", device="cpu")  # a second start keeps the same folder
    assert pathlib.Path(os.environ["ADVCOURSE_CACHE"]) == smoke_cache
    advcourse.start("fast", device="cpu")
    assert os.environ["ADVCOURSE_CACHE"] == str(tmp_path)
    monkeypatch.setenv("ADVCOURSE_SMOKE_CACHE", str(tmp_path / "smoke"))  # a folder of the caller's choice
    advcourse.start("smoke", device="cpu")
    assert os.environ["ADVCOURSE_CACHE"] == str(tmp_path / "smoke")
    advcourse.start("fast", device="cpu")  # leave the smoke profile before monkeypatch restores the variables


def test_smoke_data_skip_the_download_and_shrink(restore_state, monkeypatch, capsys):
    import torchvision.datasets as tvd

    def no_download(*args, **kwargs):
        raise AssertionError("the smoke profile must not try to download")

    monkeypatch.setattr(tvd, "CIFAR10", no_download)
    advcourse.start("smoke", device="cpu")
    cifar = data.cifar10(full=True)
    assert FALLBACK in capsys.readouterr().err
    n_train = data.SMOKE_TRAIN
    assert cifar.source == "embedded" and cifar.x_train.shape == (n_train, 3, 32, 32)
    assert cifar.x_test.shape == (1000, 3, 32, 32)  # the test set stays whole
    assert torch.bincount(cifar.y_train).tolist() == [n_train // 10 + (k < n_train % 10) for k in range(10)]
    advcourse.start("fast", device="cpu")
    assert len(data.cifar10().x_train) == 5000  # the whole embedded set again


def test_offline_switch_takes_the_fallback(monkeypatch, capsys):
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd, "MNIST", lambda *a, **k: pytest.fail("ADVCOURSE_OFFLINE=1 must not download"))
    monkeypatch.setenv("ADVCOURSE_OFFLINE", "1")
    digits = data.mnist(full=True)
    assert FALLBACK in capsys.readouterr().err and len(digits.x_train) == 8000


@pytest.mark.parametrize("name", MODULES)
def test_smoke_settings_only_cap_the_full_ones(name):
    """``FULL.smoke()``: the same type, every count, epoch and list at most the full profile's, and the
    same data set (the smoke profile runs the full path, only less of it)."""
    module = importlib.import_module(f"advcourse.experiments.{name}")
    full = module.FULL
    smoke = full.smoke()
    assert type(smoke) is type(full) and smoke != full
    for f in dataclasses.fields(full):
        a, b = getattr(smoke, f.name), getattr(full, f.name)
        if isinstance(b, bool) or not isinstance(b, (int, tuple)):
            continue
        assert (len(a) <= len(b)) if isinstance(b, tuple) else (a <= b), f"{name}: smoke {f.name}={a} > full {b}"
    for f in ("data", "dataset"):
        assert getattr(smoke, f, None) == getattr(full, f, None)


# --- every chapter, executed ----------------------------------------------------------------------------

def _build_book():
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """Every chapter executed in the smoke profile, two kernels at a time (CI has two cores):
    {name: (record or exception, executed notebook path)}. The kernels see an empty model cache and
    the offline switch; the smoke profile must leave that cache empty."""
    build_book = _build_book()
    out = tmp_path_factory.mktemp("smoke")
    cache = out / "models"
    saved = {k: os.environ.get(k)
             for k in ("ADVCOURSE_CACHE", "ADVCOURSE_SMOKE_CACHE", "ADVCOURSE_OFFLINE", "ADVCOURSE_PROFILE",
                       "ADVCOURSE_CPU_THREADS")}
    # The smoke models go to a folder pytest removes (a kernel killed at shutdown skips the package's cleanup).
    os.environ.update(ADVCOURSE_CACHE=str(cache), ADVCOURSE_SMOKE_CACHE=str(out / "smoke-models"),
                      ADVCOURSE_OFFLINE="1", ADVCOURSE_CPU_THREADS="1")  # two kernels, one thread each
    os.environ.pop("ADVCOURSE_PROFILE", None)

    def one(name):
        target = out / f"{name}.ipynb"
        try:
            return name, (build_book.execute_notebook(ROOT / "chapters" / f"{name}.md", target, "smoke", 0), target)
        except Exception as err:  # reported by the chapter's own test
            return name, (err, target)

    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            runs = dict(pool.map(one, CHAPTERS))
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    runs["_cache"] = cache
    return runs


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_runs_in_the_smoke_profile(smoke_runs, name):
    import nbformat

    record, target = smoke_runs[name]
    if isinstance(record, Exception):
        pytest.fail(f"{name} failed in the smoke profile:\n{str(record)[-3000:]}")
    nb = nbformat.read(target, as_version=4)
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                   for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "profile smoke" in text or "'smoke'" in text, "the run was not in the smoke profile"
    source = (ROOT / "chapters" / f"{name}.md").read_text()
    if "full=run.full" in source or "load_data(" in source:  # the full data path: its offline fallback ran
        assert FALLBACK in text
    # capped runs select little (an attack that fools nothing, a model that sorts nothing): the prose and
    # tables must then say so or show a dash, never a mean over nothing printed as 'nan'
    shown = [str(o.get("data", {}).get(key, "")) for c in nb.cells if c.cell_type == "code"
             for o in c.get("outputs", []) for key in ("text/markdown", "application/papermill.record/text/plain")]
    odd = [t[:200] for t in shown if not t.startswith("```") and re.search(r"\bnan\b|nan%", t)]  # not code
    assert not odd, f"{name}: glued text or tables show NaN in the smoke profile: {odd[:3]}"
    print(f"{name}: {record['seconds']} s in the smoke profile")


def test_smoke_runs_leave_the_model_cache_alone(smoke_runs):
    cache = smoke_runs["_cache"]
    assert not cache.exists() or not any(cache.iterdir()), sorted(p.name for p in cache.iterdir())
