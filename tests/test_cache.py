"""Load-or-train: one training, atomic files, corrupt or stale entries retrained."""

import json

import pytest
import torch
from torch import nn

from advcourse import __version__
from advcourse.cache import config_key, load_or_train


class Counter:
    def __init__(self):
        self.fits = 0

    def build(self, config):
        torch.manual_seed(config["seed"])
        return nn.Linear(3, 2)

    def fit(self, model, config):
        self.fits += 1
        with torch.no_grad():
            model.weight.add_(config["shift"])
        return {"accuracy": 0.5 + self.fits / 100}


CONFIG = {"seed": 1, "shift": 0.25}


def test_trains_once_then_loads(tmp_path):
    c = Counter()
    m1, meta1 = load_or_train("toy", CONFIG, c.build, c.fit, directory=tmp_path)
    m2, meta2 = load_or_train("toy", CONFIG, c.build, c.fit, directory=tmp_path)
    assert c.fits == 1 and not meta1["from_cache"] and meta2["from_cache"]
    assert torch.equal(m1.weight, m2.weight) and not m2.training
    meta = json.loads(next(tmp_path.glob("*.json")).read_text())
    for key in ("config", "metrics", "seed", "advcourse", "torch", "python", "train_seconds", "weights_sha256"):
        assert key in meta
    assert meta["advcourse"] == __version__ and meta["seed"] == 1
    assert not list(tmp_path.glob("*.tmp")), "no temporary files left behind"


def test_new_config_new_key(tmp_path):
    c = Counter()
    load_or_train("toy", CONFIG, c.build, c.fit, directory=tmp_path)
    load_or_train("toy", {**CONFIG, "shift": 0.5}, c.build, c.fit, directory=tmp_path)
    assert c.fits == 2
    assert config_key("toy", CONFIG) != config_key("toy", {**CONFIG, "shift": 0.5})
    assert config_key("toy", CONFIG) == config_key("toy", dict(reversed(list(CONFIG.items()))))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "meta", "stale"])
def test_corrupt_or_stale_entry_is_retrained(tmp_path, capsys, damage):
    c = Counter()
    good, _ = load_or_train("toy", CONFIG, c.build, c.fit, directory=tmp_path)
    weights, meta_path = next(tmp_path.glob("*.pt")), next(tmp_path.glob("*.json"))
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:50])
    elif damage == "garbage":
        weights.write_bytes(b"not a checkpoint")
    elif damage == "meta":
        meta_path.write_text("{broken")
    else:  # metadata written by another version
        meta = json.loads(meta_path.read_text())
        meta["advcourse"] = "0.0.0"
        meta_path.write_text(json.dumps(meta))
    model, meta = load_or_train("toy", CONFIG, c.build, c.fit, directory=tmp_path)
    assert c.fits == 2 and not meta["from_cache"]
    assert "retraining" in capsys.readouterr().err
    assert torch.equal(model.weight, good.weight)  # deterministic build + fit
    _, again = load_or_train("toy", CONFIG, c.build, c.fit, directory=tmp_path)
    assert again["from_cache"] and c.fits == 2


def test_weights_with_wrong_shapes_are_retrained(tmp_path):
    c = Counter()
    load_or_train("toy", CONFIG, c.build, c.fit, directory=tmp_path)
    weights, meta_path = next(tmp_path.glob("*.pt")), next(tmp_path.glob("*.json"))
    torch.save({"weight": torch.zeros(5, 5), "bias": torch.zeros(5)}, weights)
    meta = json.loads(meta_path.read_text())
    import hashlib
    meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))
    _, meta = load_or_train("toy", CONFIG, c.build, c.fit, directory=tmp_path)
    assert c.fits == 2 and not meta["from_cache"]


def test_bad_name(tmp_path):
    c = Counter()
    with pytest.raises(ValueError, match="name"):
        load_or_train("a/b", CONFIG, c.build, c.fit, directory=tmp_path)


# --- the key covers the code: architecture, training step, and the package code they use ------

def _mlp(activation):
    def build(config):
        torch.manual_seed(config["seed"])
        return nn.Sequential(nn.Linear(3, 4), activation(), nn.Linear(4, 2))  # same shapes either way
    return build


def _fit_sgd(model, config):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.ones(5, 3)).pow(2).mean()
    loss.backward()
    opt.step()
    return {}


def _fit_adam(model, config):
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    loss = model(torch.ones(5, 3)).pow(2).mean()
    loss.backward()
    opt.step()
    return {}


def test_a_changed_activation_retrains(tmp_path):
    relu, gelu = _mlp(nn.ReLU), _mlp(nn.GELU)
    _, first = load_or_train("toy", CONFIG, relu, _fit_sgd, directory=tmp_path)
    _, again = load_or_train("toy", CONFIG, relu, _fit_sgd, directory=tmp_path)
    _, other = load_or_train("toy", CONFIG, gelu, _fit_sgd, directory=tmp_path)
    assert again["from_cache"] and again["key"] == first["key"]
    # same config, same parameter shapes (a strict state-dict load would succeed): still a new entry
    assert not other["from_cache"] and other["key"] != first["key"]


def test_a_changed_training_step_retrains(tmp_path):
    build = _mlp(nn.ReLU)
    _, sgd = load_or_train("toy", CONFIG, build, _fit_sgd, directory=tmp_path)
    _, adam = load_or_train("toy", CONFIG, build, _fit_adam, directory=tmp_path)
    assert not adam["from_cache"] and adam["key"] != sgd["key"]


def test_the_fingerprint_follows_the_package_code_a_fit_uses(monkeypatch):
    from advcourse import cache
    from advcourse.attacks import fgsm
    from advcourse.train import train

    model = nn.Linear(3, 2)

    def fit(model, config):  # adversarial training through the package: train() and fgsm()
        return train(model, torch.rand(4, 3), torch.zeros(4, dtype=torch.long),
                     adversary=lambda m, x, y: fgsm(m, x, y, 0.1), progress=False)

    before = cache.code_fingerprint(model, fit)
    assert cache.code_fingerprint(model, fit) == before  # deterministic
    # an edit to the attack that adversarial training calls changes the fingerprint
    real = cache._module_source.__wrapped__
    monkeypatch.setattr(cache, "_module_source",
                        lambda name: real(name) + ("# edited" if name == "advcourse.attacks.fgsm" else ""))
    assert cache.code_fingerprint(model, fit) != before
