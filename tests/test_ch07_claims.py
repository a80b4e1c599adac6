"""Chapter 7's claims, on the fast profile's data and training settings (shared model cache)."""

from types import SimpleNamespace

import pytest
import torch
import torchvision

from advcourse.evaluate import accuracy, logits
from advcourse.exercises.ch07 import check_identity_block
from advcourse.experiments import ch07_resnet as rn
from advcourse.models.resnet import branch_norms, cifar_resnet, mnist_resnet, resnet18, resnet34

# The chapter's fast-profile settings: every model is trained with this recipe.
S = rn.FAST
RECIPE = dict(**S.recipe(), seed=0, device="cpu", progress=False)
SHALLOW, DEEP = S.depths

pytestmark = pytest.mark.usefixtures("two_torch_threads")  # as the chapter: the same weights


@pytest.fixture(scope="module")
def ds():
    return rn.load_data(S)


@pytest.fixture(scope="module")
def nets(ds):
    """The chapter's four networks ({plain, residual}-{shallow, deep}) as (model, meta)."""
    return {f"{'residual' if r else 'plain'}-{d}": rn.train_net(ds, depth=d, residual=r, **RECIPE)
            for d in S.depths for r in (False, True)}


def final_loss(nets, name):
    return nets[name][1]["metrics"]["loss"][-1]


# --- the chapter's claims --------------------------------------------------------------------

def test_degradation_in_plain_nets_and_not_in_residual_ones(nets):
    pS, pD = final_loss(nets, f"plain-{SHALLOW}"), final_loss(nets, f"plain-{DEEP}")
    rS, rD = final_loss(nets, f"residual-{SHALLOW}"), final_loss(nets, f"residual-{DEEP}")
    # A final loss is a mean over the last half epoch's 6,000 training images: its sampling error is about
    # 0.01, so orderings are checked with a margin of 0.02. The size of the effect depends on the CPU's
    # arithmetic (same code and seed: plain-32 above plain-8 by 0.165 on one CPU, by 0.035 on another).
    assert pD > pS + 0.02          # the deeper plain net fits its training data worse (paper: Fig. 4 left)
    assert rD < rS - 0.02          # with shortcuts depth helps again (Fig. 4 right)
    assert rD < pD - 0.1           # the residual net fits far better than the plain net of its depth


def test_residual_deep_net_generalises_better_than_plain_deep_net(ds, nets):
    err = {k: 1 - accuracy(m, ds.x_test, ds.y_test) for k, (m, _) in nets.items()}
    assert err[f"residual-{DEEP}"] < err[f"plain-{DEEP}"] - 0.02


def test_no_vanishing_gradients_in_the_bn_plain_net(nets):
    m = nets[f"plain-{DEEP}"][1]["metrics"]
    for record in [m["grad_norms_init"], *m["grad_norms"]]:
        assert len(record) == DEEP - 1                   # stem + two 3×3 convs per block
        assert max(record) / min(record) < 100           # paper: "healthy norms"
        assert min(record) > 1e-3
    assert m["grad_norms_init"][0] > m["grad_norms_init"][-1]   # at init the first layer gets the larger one


def test_a_deep_plain_net_as_good_as_the_shallow_one_exists(ds, nets):
    x, y = ds.x_train[:2000], ds.y_train[:2000]
    shallow, trained_deep = nets[f"plain-{SHALLOW}"][0], nets[f"plain-{DEEP}"][0]
    copy = rn.deepen(shallow, DEEP)
    assert len(copy.blocks()) == len(trained_deep.blocks())
    assert (logits(copy, x) - logits(shallow, x)).abs().max() < 1e-4
    assert rn.mean_loss(copy, x, y) == pytest.approx(rn.mean_loss(shallow, x, y), abs=1e-5)
    # SGD's deep plain net is no better than the shallow solution it holds (on one CPU it is worse by 0.05,
    # 9 standard errors; on another by 0.004, within the error): depth bought it nothing
    gap, se = rn.loss_gap(copy, trained_deep, x, y)
    assert gap > -2 * se


def test_loss_gap_is_paired_and_signed(ds, nets):
    x, y = ds.x_train[:500], ds.y_train[:500]
    shallow, deep = nets[f"plain-{SHALLOW}"][0], nets[f"plain-{DEEP}"][0]
    gap, se = rn.loss_gap(shallow, deep, x, y)
    assert gap == pytest.approx(rn.mean_loss(deep, x, y) - rn.mean_loss(shallow, x, y), abs=1e-5)
    assert rn.loss_gap(deep, shallow, x, y) == pytest.approx((-gap, se), abs=1e-6)
    assert se > 0 and rn.loss_gap(shallow, rn.deepen(shallow, DEEP), x, y)[1] < 1e-5  # same function: no error
    with pytest.raises(ValueError, match="x must hold at least 2"):
        rn.loss_gap(shallow, deep, x[:1], y[:1])


def test_shortcut_options_differ_little_and_all_beat_the_plain_net(ds, nets):
    abc = {s: rn.train_net(ds, depth=DEEP, residual=True, shortcut=s, **RECIPE) for s in S.shortcuts}
    err = {s: 1 - accuracy(m, ds.x_test, ds.y_test) for s, (m, _) in abc.items()}
    assert abs(err["A"] - err["B"]) < 0.025   # paper: small differences (C: see the chapter, it differs)
    plain = final_loss(nets, f"plain-{DEEP}")
    assert all(meta["metrics"]["loss"][-1] < plain - 0.1 for _, meta in abc.values())


def test_residual_branches_are_smaller_in_the_deeper_net_but_not_zero(ds, nets):
    x = ds.x_train[:S.n_probe]
    rS = branch_norms(nets[f"residual-{SHALLOW}"][0], x)
    rD = branch_norms(nets[f"residual-{DEEP}"][0], x)
    assert rD.median() < 0.8 * rS.median()   # paper: deeper ResNets have smaller responses
    assert rD.min() > 0.1                    # the notes' "near zero" does not hold
    assert rD[0] > 1.0                       # the first block, widening the stem's output, adds more than its input


def test_layer_responses_barely_leave_one_in_a_few_epochs(ds, nets):
    x = ds.x_train[:S.n_probe]
    for name in (f"plain-{DEEP}", f"residual-{DEEP}"):
        resp = rn.layer_responses(nets[name][0], x)
        assert len(resp) == DEEP - 2
        assert (resp - 1).abs().median() < 0.1


def test_neither_depth_nor_shortcut_gives_robustness(ds, nets):
    x, y = rn.test_subset(ds, 200)
    curves = rn.robustness_curves({k: m for k, (m, _) in nets.items()}, x, y, (S.attack_eps[1], S.attack_eps[-1]),
                                  steps=S.attack_steps, generator=torch.Generator().manual_seed(0))
    for clean, mid, large in curves.values():
        assert clean >= mid >= large
        assert large < 0.3                    # at the largest ε no net keeps even a third of the images
    # How much the shortcut changes robustness at the small budget varies from run to run (one seed, three
    # epochs: residual-32 kept 38% in one training run and 60% in another, with plain-32 at 36%); the
    # chapter picks its sentence from the numbers, so only the architecture-independent claim is tested.


# --- the experiment functions -------------------------------------------------------------------

def test_segments_cut_each_pass_and_keep_epochs_whole():
    batches = [torch.tensor([i]) for i in range(10)]
    seg = rn.Segments(batches, 3)
    parts = [list(seg) for _ in range(6)]
    assert [len(p) for p in parts] == [3, 3, 4, 3, 3, 4] and len(seg) == 4
    assert [int(b) for p in parts[:3] for b in p] == list(range(10))
    with pytest.raises(ValueError):
        rn.Segments(batches, 11)


def test_random_crop_flip_shifts_and_flips():
    x = torch.rand(16, 3, 8, 8)
    out = rn.random_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape
    flipped = rn.random_crop_flip(x, torch.Generator().manual_seed(0), pad=0)  # pad 0: only flips
    assert all(torch.equal(f, a) or torch.equal(f, a.flip(2)) for f, a in zip(flipped, x))
    # every output value is an input value or the zero padding
    assert torch.isin(out, torch.cat([x.flatten(), torch.zeros(1)])).all()


def test_identity_checker_accepts_the_answer_and_rejects_a_wrong_one():
    assert "passed" in check_identity_block(rn.make_identity_)

    def residual_only(block):  # zeroing the last BN is enough for a residual block, not for a plain one
        with torch.no_grad():
            block.bn2.weight.zero_()
            block.bn2.bias.zero_()

    with pytest.raises(AssertionError, match="plain block"):
        check_identity_block(residual_only)
    with pytest.raises(AssertionError, match="in place"):
        check_identity_block(lambda block: torch.nn.Identity())


@pytest.mark.parametrize("residual, shortcut", [(False, "A"), (True, "A"), (True, "C")])
def test_deepen_computes_the_shallow_function(residual, shortcut):
    torch.manual_seed(0)
    shallow = mnist_resnet(8, (4, 8, 16), residual=residual, shortcut=shortcut)
    shallow.train()(torch.rand(32, 1, 28, 28))  # non-trivial running statistics
    shallow.eval()
    deep = rn.deepen(shallow, 20)
    x = torch.rand(4, 1, 28, 28)
    assert len(deep.blocks()) == 9
    assert torch.allclose(deep(x), shallow(x), atol=1e-5)
    with pytest.raises(ValueError):
        rn.make_identity_(deep.layer2[0])  # a block with stride 2 cannot be the identity


def test_costs_match_the_paper():
    costs = list(rn.block_costs().values())
    assert [c["params"] for c in costs] == [73_728, 69_632]
    assert [c["madds"] for c in costs] == [73_728 * 56 * 56, 69_632 * 56 * 56]
    assert abs(rn.multiply_adds(resnet34(), (3, 224, 224)) / 1e9 - 3.6) < 0.1   # paper: 3.6 billion FLOPs
    assert abs(sum(p.numel() for p in cifar_resnet(20).parameters()) / 1e6 - 0.27) < 0.01


def test_resnet18_equals_torchvision():
    torch.manual_seed(0)
    diff = rn.torchvision_difference(resnet18(), torchvision.models.resnet18(weights=None), torch.rand(1, 3, 48, 48))
    assert diff < 1e-4


def test_gradient_norms_leave_the_model_untouched():
    torch.manual_seed(0)
    model = mnist_resnet(8, (4, 8, 16)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norms = rn.layer_gradient_norms(model, torch.rand(8, 1, 28, 28), torch.arange(8))
    assert len(norms) == 7 and all(n > 0 for n in norms)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and not model.training


def test_adversarial_training_path_runs(tmp_path, monkeypatch, ds):
    """The full profile's capacity study, on a tiny setting (the fast profile skips it)."""
    monkeypatch.setenv("ADVCOURSE_CACHE", str(tmp_path))
    small = SimpleNamespace(x_train=ds.x_train[:256], y_train=ds.y_train[:256], x_test=ds.x_test[:64],
                            y_test=ds.y_test[:64], source=ds.source)
    settings = rn.Settings(widths=(2, 4, 8), adv_scales=(1, 2), adv_epochs=1, adv_steps=2, n_attack=64,
                           attack_steps=3, batch_size=64)
    out = rn.capacity_study(small, settings)
    assert list(out) == [1, 2] and out[2]["params"] > out[1]["params"]
    assert all(0 <= c["pgd"] <= c["clean"] <= 1 for c in out.values())
    assert rn.capacity_study(small, S) == {}
