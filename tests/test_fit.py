"""``advcourse.train.fit``: one loop for every objective of the book, each expressed as a ``step``.

Cross-entropy on images is :func:`advcourse.train.train` (its claims are the chapters'); here the
other objectives the architecture chapters need: soft targets, masked-patch reconstruction,
masked-token prediction on integer ids, and a GAN's two optimisers — each trained for a few steps
on tiny models, with the loss going down and nothing special-cased in the loop.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advcourse.defenses import Adversary, train_distilled
from advcourse.train import Shuffled, fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_shuffled_reshuffles_each_pass_and_keeps_tensors_aligned():
    x, y = torch.arange(10.0), torch.arange(10)
    batches = Shuffled(x, y, batch_size=4, seed=0)
    first, second = list(batches), list(batches)
    assert len(batches) == 3 and [len(b[0]) for b in first] == [4, 4, 2]
    assert all(torch.equal(b[0].long(), b[1]) for b in first + second)  # rows stay paired
    assert not torch.equal(torch.cat([b[1] for b in first]), torch.cat([b[1] for b in second]))
    assert sorted(torch.cat([b[1] for b in first]).tolist()) == list(range(10))
    again = list(Shuffled(x, y, batch_size=4, seed=0))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, again))  # same seed, same order
    with pytest.raises(ValueError, match="same length"):
        Shuffled(x, y[:5])
    with pytest.raises(ValueError, match="batch_size"):
        Shuffled(x, batch_size=0)


def test_fit_checks_its_arguments():
    model = nn.Linear(2, 1)
    step = lambda m, b: m(b[0]).sum()  # noqa: E731
    with pytest.raises(ValueError, match="epochs"):
        fit(model, [(torch.ones(1, 2),)], step, epochs=0)
    with pytest.raises(ValueError, match="keep_best needs validate"):
        fit(model, [(torch.ones(1, 2),)], step, keep_best="acc")
    with pytest.raises(ValueError, match="optimizer"):
        fit(model, [(torch.ones(1, 2),)], step, optimizer="lbfgs")


def test_logs_are_per_example_means_and_keep_best_restores_the_best_epoch():
    torch.manual_seed(0)
    model = nn.Linear(1, 1, bias=False)
    x = torch.ones(6, 1)
    scores = iter([0.2, 0.9, 0.5])  # the validation score peaks after the second epoch
    weights = []

    def step(m, batch):
        return m(batch[0]).pow(2).mean(), {"count": len(batch[0])}

    def validate(m):
        weights.append(m.weight.detach().clone())
        return {"score": next(scores)}

    hist = fit(model, Shuffled(x, batch_size=4, seed=0), step, epochs=3, optimizer="sgd", lr=0.01,
               validate=validate, keep_best="score", progress=False)
    assert hist["count"] == [1.0, 1.0, 1.0]  # totals over an epoch divided by the examples seen
    assert hist["score"] == [0.2, 0.9, 0.5] and hist["best_epoch"] == 1
    assert torch.equal(model.weight, weights[1]) and not model.training


def test_soft_target_distillation_step():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 4, 4)
    soft = torch.softmax(torch.randn(64, 3) * 3, dim=1)
    student = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    hist = train_distilled(student, x, soft, temperature=5.0, epochs=20, batch_size=16, lr=0.05, progress=False)
    assert hist["loss"][-1] < hist["loss"][0]
    assert 0 <= hist["train_acc"][-1] <= 1


def test_masked_patch_reconstruction_step():
    from advcourse.models.mae import MAE, MAEConfig

    torch.manual_seed(0)
    config = MAEConfig(image_size=8, patch_size=4, in_channels=1, dim=16, depth=1, heads=2, mlp_dim=32,
                       decoder_dim=16, decoder_depth=1, decoder_heads=2, decoder_mlp_dim=32)
    model = MAE(config)
    x = torch.rand(32, 1, 8, 8)
    gen = torch.Generator().manual_seed(0)
    hist = fit(model, Shuffled(x, batch_size=8, seed=0), lambda m, b: m(b[0], 0.75, generator=gen)[0],
               epochs=15, lr=3e-3, progress=False)
    assert hist["loss"][-1] < 0.8 * hist["loss"][0]


def test_masked_token_prediction_on_integer_ids():
    from advcourse.models.bert import BertConfig, BertMLMHead, BertModel, mlm_corrupt

    torch.manual_seed(0)
    config = BertConfig(vocab_size=20, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                        max_position=16, dropout=0.0)
    bert = BertModel(config)
    model = nn.ModuleDict({"bert": bert, "head": BertMLMHead(config, bert.embeddings.word_embeddings)})
    ids = torch.randint(5, 20, (64, 10))
    ids[:, 5:] = ids[:, :5]  # the second half repeats the first: learnable from context
    special = torch.zeros_like(ids, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)

    def step(m, batch):
        (tokens,) = batch
        corrupted, labels = mlm_corrupt(tokens, special[: len(tokens)], config.vocab_size, mask_id=4, p=0.3,
                                        generator=gen)
        hidden, _ = m["bert"](corrupted)
        return F.cross_entropy(m["head"](hidden).flatten(0, 1), labels.flatten(), ignore_index=-100)

    hist = fit(model, Shuffled(ids, batch_size=16, seed=0), step, epochs=40, lr=1e-2, progress=False)
    assert ids.dtype == torch.int64 and hist["loss"][-1] < 0.7 * hist["loss"][0]


def test_a_gan_step_with_its_own_two_optimisers():
    """``optimizer=None``: the step updates the discriminator and the generator itself (Algorithm 1)."""
    torch.manual_seed(0)
    gen_net, disc = nn.Linear(1, 1), nn.Sequential(nn.Linear(1, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    gan = nn.ModuleDict({"G": gen_net, "D": disc})
    opt_g, opt_d = torch.optim.Adam(gen_net.parameters(), lr=0.02), torch.optim.Adam(disc.parameters(), lr=0.02)
    data = 3 + 0.5 * torch.randn(512, 1)

    def step(m, batch):
        (real,) = batch
        fake = m["G"](torch.randn(len(real), 1))
        d = F.binary_cross_entropy_with_logits
        d_loss = d(m["D"](real), torch.ones(len(real), 1)) + d(m["D"](fake.detach()), torch.zeros(len(real), 1))
        opt_d.zero_grad(), d_loss.backward(), opt_d.step()
        g_loss = d(m["D"](fake), torch.ones(len(real), 1))  # non-saturating generator loss
        opt_g.zero_grad(), g_loss.backward(), opt_g.step()
        return g_loss.detach(), {"d_loss": d_loss.item() * len(real)}

    hist = fit(gan, Shuffled(data, batch_size=64, seed=0), step, epochs=40, optimizer=None, progress=False)
    assert len(hist["d_loss"]) == 40
    assert abs(gen_net(torch.randn(2000, 1)).mean().item() - 3) < 0.5  # G moved its samples onto the data


def test_adversary_at_eps_zero_returns_the_batch():
    """Madry et al.'s adversary with a zero budget (a clean baseline) used to divide by zero."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    for method in ("fgsm", "pgd"):
        adv = Adversary(method, eps=0.0, steps=3, warmup_batches=2)
        assert torch.equal(adv(model, x, y), x) and adv.eps_used == [0.0]
