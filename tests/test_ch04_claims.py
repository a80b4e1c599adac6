"""Chapter 4's claims, on the fast profile's data and training settings (shared model cache)."""

import json
import math
import shutil

import pytest
import torch

from advcourse import checkpoint
from advcourse.attacks import fgsm, pgd, robust_accuracy, strong_evaluation
from advcourse.data import ChecksumError
from advcourse.evaluate import accuracy
from advcourse.exercises.ch04 import check_pgd_step
from advcourse.experiments import ch04_pgd_saddle_point as sp

# The chapter's fast-profile settings: every model is trained with this recipe.
S = sp.FAST
RECIPE = dict(**S.recipe(), seed=0, device="cpu", progress=False)
SCALE, SCALES, EPS = S.scale, list(S.scales), sp.EPS
N = 200  # test digits attacked here (the chapter attacks more)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def test_set(mnist):
    return sp.test_subset(mnist, N)  # a random sample of the test digits


@pytest.fixture(scope="module")
def models(mnist):
    """The networks of the chapter: the PGD-trained shipped checkpoint (width ×8, with its metadata) and the same
    network trained normally, and at width ×4 a PGD-trained copy by the short recipe and an FGSM-trained one."""
    robust, meta = sp.load_checkpoint()
    standard = sp.train_cnn(mnist, scale=meta["recipe"]["scale"], method="standard",
                            **{**RECIPE, "epochs": S.standard_epochs})[0]
    copy = sp.train_cnn(mnist, scale=SCALE, method="pgd", **{**RECIPE, "seed": 1})[0]
    fgsm_model = sp.train_cnn(mnist, scale=SCALE, method="fgsm", **RECIPE)[0]
    return {"standard": standard, "pgd": robust, "meta": meta, "copy": copy, "fgsm": fgsm_model}


def g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_pgd_step_is_the_projected_signed_step():
    assert "passed" in check_pgd_step(sp.pgd_step)
    with pytest.raises(AssertionError):  # forgetting the projection is caught
        check_pgd_step(lambda x_t, x, grad, eps, alpha: (x_t + alpha * grad.sign()).clamp(0, 1))
    with pytest.raises(AssertionError):  # projecting around the iterate instead of the clean image
        check_pgd_step(lambda x_t, x, grad, eps, alpha:
                       torch.min(torch.max(x_t + alpha * grad.sign(), x_t - eps), x_t + eps).clamp(0, 1))


def test_pgd_paths_stay_feasible_and_rise(models, test_set):
    x, y = test_set
    paths = sp.pgd_paths(models["standard"], x[:3], y[:3], eps=EPS, alpha=0.0375, steps=20, restarts=30,
                         generator=g())
    assert paths.shape == (3, 30, 21)
    assert (paths[:, :, -1].median(1).values > paths[:, :, 0].median(1).values).all()


def test_inner_maxima_are_concentrated_and_lower_after_pgd_training(models, test_set):
    # the chapter's five digits and its criterion for "concentrated"; on other digits of the standard
    # network the runs can split between two maxima of different heights
    x, y = test_set[0][:5], test_set[1][:5]
    kw = dict(eps=EPS, alpha=2.5 * EPS / S.land_steps, steps=S.land_steps, restarts=S.land_restarts, generator=g())
    final = {k: sp.pgd_paths(models[k], x, y, **kw)[:, :, -1] for k in ("standard", "pgd")}
    stats = {k: sp.spread(f, floor=sp.FLIP_LOSS) for k, f in final.items()}  # the chapter's scale: max(median, ln 2)
    for s in stats.values():
        assert s["max_excess"] < 1.0    # paper: no outliers (no run a whole scale above the median)
    # concentrated by the chapter's criterion on the shipped PGD-trained network (the same weights on every
    # machine). The standard network is trained here: its relative IQR was 0.105 on one CPU and below 0.1 on
    # another, and the chapter's sentence follows its own run.
    assert stats["pgd"]["rel_iqr"] < 0.1 and stats["pgd"]["above_110"] < 0.1
    assert stats["standard"]["rel_iqr"] < 0.5   # and for the median digit its runs stay within half the scale
    assert final["pgd"].median() < final["standard"].median() / 3  # paper: much smaller on the robust net


def test_spread_is_relative_to_the_median_or_to_ln2():
    small = torch.tensor([[0.004, 0.006, 0.008, 0.010]])        # a digit no start fools
    large = torch.tensor([[4.0, 4.2, 4.4, 4.6]])                 # a digit every start fools
    q = torch.quantile(small[0], torch.tensor([0.25, 0.75]))
    assert sp.spread(small)["rel_iqr"] == pytest.approx(((q[1] - q[0]) / small.median()).item())
    assert sp.spread(small, floor=sp.FLIP_LOSS)["rel_iqr"] == pytest.approx(((q[1] - q[0]) / math.log(2)).item())
    assert sp.spread(small)["above_110"] == 0.5 and sp.spread(small, floor=sp.FLIP_LOSS)["above_110"] == 0
    assert sp.spread(small)["max_excess"] == pytest.approx((0.010 - 0.006) / 0.006)
    for floor in (0.0, sp.FLIP_LOSS):                            # above ln 2 the floor changes nothing
        assert sp.spread(large, floor=floor) == pytest.approx(sp.spread(large))


def test_training_decreases_the_saddle_objective(models):
    m = models["meta"]
    losses, eps_used = torch.tensor(m["adv_loss"]), torch.tensor(m["eps_used"])
    after = losses[eps_used == EPS]
    k = len(after) // 10
    assert after[-k:].mean() < after[:k].mean() - 0.1
    assert torch.allclose(eps_used.max(), torch.tensor(EPS))


def test_pgd_training_gives_robustness_that_fgsm_and_standard_training_do_not(models, test_set):
    x, y = test_set
    robust, standard, fgsm_model = models["pgd"], models["standard"], models["fgsm"]
    pgd40 = dict(eps=EPS, alpha=0.01, steps=40, early_stop=True, generator=g())
    nat_std, nat_rob = accuracy(standard, x, y), accuracy(robust, x, y)
    assert abs(nat_rob - nat_std) < 0.05                                    # MNIST: little or no clean-accuracy cost
    r_fgsm = robust_accuracy(robust, x, y, fgsm, eps=EPS)
    r_pgd = robust_accuracy(robust, x, y, pgd, **pgd40)
    assert r_pgd <= r_fgsm + 0.01                                           # PGD at least as strong as FGSM
    assert robust_accuracy(standard, x, y, pgd, **pgd40) + 0.5 < r_pgd      # robust: most digits survive PGD
    assert robust_accuracy(standard, x, y, fgsm, eps=EPS) < min(0.2, r_fgsm - 0.5)  # standard: broken by FGSM
    assert robust_accuracy(fgsm_model, x, y, pgd, **pgd40) < r_pgd - 0.3    # FGSM training: not robust to PGD


def test_restarts_and_more_steps_take_only_a_little_more(models, test_set):
    x, y = test_set
    robust = models["pgd"]
    one = robust_accuracy(robust, x, y, pgd, eps=EPS, alpha=0.01, steps=100, early_stop=True, generator=g())
    more = robust_accuracy(robust, x, y, pgd, eps=EPS, alpha=0.01, steps=100, restarts=3, early_stop=True,
                           generator=g())
    assert one - 0.08 <= more <= one + 1e-9


def test_transfer_attacks_are_no_stronger_than_white_box(models, test_set):
    x, y = test_set
    table = sp.attack_table(models["pgd"], x, y, sources={"A′": models["copy"], "B": models["standard"]}, eps=EPS,
                            steps=(40, 100), restarts=1, generator=g())
    white = table["PGD, 100 steps"][1]
    # paper: 96.0% (A′) and 96.4% (B) against 91.8% white-box; our copy is closer to the target (see the chapter)
    assert table["PGD, 100 steps, from A′"][1] >= white - 0.02
    assert table["PGD, 40 steps, from B"][1] > white + 0.02
    assert table["FGSM from A′"][1] >= table["FGSM"][1] - 0.02


def test_capacity_and_the_inner_solver(mnist, test_set):
    x, y = test_set
    sweep = sp.capacity_sweep(mnist, SCALES, epochs=RECIPE["epochs"], steps=RECIPE["steps"], n_test=N,
                              seed=0, standard_epochs=S.standard_epochs, generator=g())
    pg, fg = sweep["pgd"], sweep["fgsm"]
    assert pg["pgd"][-1] > pg["pgd"][0] + 0.1             # capacity buys robustness
    assert pg["train_loss"][-1] < pg["train_loss"][0]     # the saddle value falls with capacity
    assert max(fg["pgd"]) < 0.4 and max(sweep["standard"]["pgd"]) < 0.05


def test_linf_robustness_holds_to_its_budget_then_drops(models, test_set):
    x, y = test_set
    c = sp.norm_curves({"std": models["standard"], "rob": models["pgd"]}, x[:100], y[:100],
                       {"inf": [0.1, 0.3, 0.4], "2": [2.0]}, steps=20, generator=g())
    assert c["rob"]["inf"][1] > c["std"]["inf"][1] + 0.5   # at the training budget ε = 0.3
    assert c["rob"]["inf"][2] < c["rob"]["inf"][1] - 0.3   # beyond it, robustness collapses
    assert c["rob"]["2"][0] > c["std"]["2"][0]             # PGD in L2 also does less to the L∞-trained net


def test_a_stronger_evaluation_never_reports_more_robustness(models, test_set):
    x, y = test_set
    x, y = x[:100], y[:100]
    for name in ("pgd", "fgsm"):
        single = robust_accuracy(models[name], x, y, pgd, eps=EPS, alpha=0.01, steps=40, early_stop=True,
                                 generator=g())
        strong = strong_evaluation(models[name], x, y, EPS, steps=50, restarts=2, square_queries=300,
                                   generator=g())
        assert strong.accuracy <= single


def test_a_single_pgd_run_overstates_the_robust_network(models, test_set):
    """The chapter's Experiment 5: on the PGD-trained network the strong evaluation finds digits one PGD run misses."""
    x, y = test_set
    o = sp.overstatement(models["pgd"], x[:100], y[:100], eps=EPS, restarts=2, strong_steps=50, square_queries=300,
                         generator=g())
    assert o["strong"] < o["pgd"]
    assert all(a >= b for a, b in zip(list(o["strong_after"].values()), list(o["strong_after"].values())[1:]))


def test_maxima_geometry_on_known_points():
    eps, d = 0.3, 784
    e = torch.zeros(1, 2, d)
    e[0, 0, 0], e[0, 1, 1] = eps, eps                                       # two orthogonal perturbations
    geo = sp.maxima_geometry(e, eps)
    assert geo["angle"] == pytest.approx(90.0) and geo["distance"] == pytest.approx(2 ** 0.5 / (2 * d ** 0.5))
    corners = torch.full((1, 3, d), eps)                                    # three runs at the same corner
    geo = sp.maxima_geometry(corners, eps)
    assert geo["angle"] == pytest.approx(0.0, abs=1e-3) and geo["distance"] == 0 and geo["norm"] == pytest.approx(1)
    with pytest.raises(ValueError, match="points"):
        sp.maxima_geometry(torch.zeros(2, 1, d), eps)


def test_checkpoint_is_the_recorded_recipe_and_its_metrics(models, mnist):
    """The shipped network is what its metadata says: the pinned recipe, and the recorded natural accuracy
    on the held-out digits is what the loaded weights give."""
    meta = models["meta"]
    assert meta["recipe"] == sp.CHECKPOINT_RECIPE and meta["weights_sha256"] == sp.CHECKPOINT_SHA256
    x_all, y_all = sp.test_subset(mnist, len(mnist.x_test))
    n_val = len(x_all) - 500
    assert accuracy(models["pgd"], x_all[n_val:], y_all[n_val:]) == pytest.approx(meta["metrics"]["natural"], abs=1e-6)
    assert len(meta["curves"]["pgd"]) == meta["recipe"]["epochs"]
    assert "train_robust" in meta["trained_by"]


def test_checkpoint_refuses_changed_weights(tmp_path):
    for ext in ("pt", "json"):
        shutil.copy(checkpoint.checkpoint_dir() / f"{sp.CHECKPOINT}.{ext}", tmp_path)
    sp.load_checkpoint(folder=tmp_path)                                     # an intact copy loads
    weights = tmp_path / f"{sp.CHECKPOINT}.pt"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    weights.write_bytes(bytes(blob))
    with pytest.raises(ChecksumError, match="SHA-256"):
        sp.load_checkpoint(folder=tmp_path)
    (tmp_path / f"{sp.CHECKPOINT}.pt").unlink()
    with pytest.raises(FileNotFoundError, match="make checkpoints"):
        sp.load_checkpoint(folder=tmp_path)


def test_checkpoint_recipe_trains(mnist, tmp_path):
    """The checkpoint's training path, for a few steps: the recipe at width ×1 on 256 digits, two epochs."""
    recipe = {**sp.CHECKPOINT_RECIPE, "scale": 1, "epochs": 2, "warmup_epochs": 1.0}
    x, y = mnist.x_train[:256], mnist.y_train[:256]
    kw = dict(x_val=mnist.x_test[:50], y_val=mnist.y_test[:50], val_steps=5, progress=False)
    model, hist = sp.train_robust(x, y, **recipe, **kw)
    again, _ = sp.train_robust(x, y, **recipe, **kw)
    assert len(hist["natural"]) == len(hist["pgd"]) == 2 and len(hist["adv_loss"]) == 2 * 4
    assert hist["eps_used"][0] < recipe["eps"] == hist["eps_used"][-1]      # ε ramps up over the first epoch
    assert all(torch.isfinite(torch.tensor(hist["loss"])))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    torch.manual_seed(recipe["seed"])                                       # train_robust's initialisation
    init = sp.MnistCNN(*sp.widths(1))
    assert not torch.equal(init.state_dict()["classifier.3.weight"], model.state_dict()["classifier.3.weight"])
    meta = checkpoint.save(model, "tiny", {"recipe": recipe}, folder=tmp_path)
    loaded = sp.MnistCNN(*sp.widths(1))
    assert checkpoint.load(loaded, "tiny", meta["weights_sha256"], folder=tmp_path)["recipe"] == recipe
    assert json.loads((tmp_path / "tiny.json").read_text())["torch"] == torch.__version__


def test_masking_audit_passes_the_pgd_trained_model(models, test_set):
    """Chapter 6's audit finds no sign of gradient masking in this chapter's PGD-trained network."""
    from advcourse.attacks import audit

    x, y = test_set
    report = audit(models["pgd"], x[:100], y[:100], EPS, name="PGD-trained", substitute=models["standard"], steps=40,
                   generator=g())
    assert report.passed, report.flags
    assert report.robust_accuracy > 0.5
