"""Device choice, profiles, seeding and the reproducibility stamp."""

import pytest
import torch

import advcourse
from advcourse import runtime


@pytest.fixture(autouse=True)
def _restore_global_state():
    """start() and seed_everything() set process-wide state on purpose (seeds, deterministic
    algorithms, cuDNN, threads); put it back so later tests do not depend on this module's order."""
    rng = torch.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark, threads = torch.backends.cudnn.benchmark, torch.get_num_threads()
    yield
    torch.set_rng_state(rng)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.benchmark = benchmark
    torch.set_num_threads(threads)


def test_auto_profile_is_fast_on_cpu(monkeypatch):
    monkeypatch.delenv("ADVCOURSE_PROFILE", raising=False)
    assert runtime.resolve_profile("auto", torch.device("cpu")) == "fast"
    assert runtime.resolve_profile("auto", torch.device("cuda")) == "full"
    assert runtime.resolve_profile("full", torch.device("cpu")) == "full"


def test_profile_override_and_bad_values(monkeypatch):
    monkeypatch.setenv("ADVCOURSE_PROFILE", "full")
    assert runtime.resolve_profile("auto", torch.device("cpu")) == "full"
    with pytest.raises(ValueError, match="profile"):
        runtime.resolve_profile("medium")


def test_device_preference(monkeypatch):
    monkeypatch.delenv("ADVCOURSE_DEVICE", raising=False)
    assert runtime.get_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert runtime.get_device().type in ("cpu", "mps")
    with pytest.raises(ValueError, match="prefer"):
        runtime.get_device("tpu")


def test_seeding_is_reproducible():
    runtime.seed_everything(3)
    a = torch.randn(5)
    g = runtime.seed_everything(3)
    assert torch.equal(a, torch.randn(5))
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(-1)


def test_start_and_stamp(monkeypatch):
    monkeypatch.delenv("ADVCOURSE_PROFILE", raising=False)
    run = advcourse.start("fast", seed=7, device="cpu")
    assert run.profile == "fast" and not run.full and run.pick(1, 2) == 1
    s = run.stamp
    text = str(s)
    for part in (advcourse.__version__, torch.__version__, "cpu", "fast", "seed 7"):
        assert part in text
    assert s._repr_markdown_().startswith("**Reproducibility stamp**")


@pytest.fixture
def restore_threads():
    """start(cpu_threads=n) sets torch's and the BLAS libraries' thread counts for the process: put them back."""
    import threadpoolctl

    before = torch.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=None):  # restores the libraries' limits on the way out
        yield
    torch.set_num_threads(before)


def test_cpu_threads(restore_threads):
    import threadpoolctl

    advcourse.start("fast", seed=0, device="cpu", cpu_threads=1)
    assert torch.get_num_threads() == 1
    blas = [b for b in threadpoolctl.threadpool_info() if b["user_api"] == "blas"]
    assert any("scipy" in b["filepath"] for b in blas)   # scipy's own BLAS is loaded, and limited
    assert all(b["num_threads"] == 1 for b in blas)
    with pytest.raises(ValueError, match="cpu_threads"):
        advcourse.start("fast", seed=0, device="cpu", cpu_threads=0)


def test_cpu_threads_from_the_environment_override_the_chapter(restore_threads, monkeypatch):
    monkeypatch.setenv("ADVCOURSE_CPU_THREADS", "1")
    advcourse.start("fast", seed=0, device="cpu", cpu_threads=2)
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("ADVCOURSE_CPU_THREADS", "two")
    with pytest.raises(ValueError, match="ADVCOURSE_CPU_THREADS"):
        advcourse.start("fast", seed=0, device="cpu")
    monkeypatch.setenv("ADVCOURSE_CPU_THREADS", "0")
    with pytest.raises(ValueError, match="cpu_threads"):
        advcourse.start("fast", seed=0, device="cpu")
