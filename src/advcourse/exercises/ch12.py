"""Chapter 12 checkers: BERT's masked-LM corruption and the first-order score of a token flip."""

from __future__ import annotations

import torch

_VOCAB, _MASK = 500, 4  # ids 0–4 play [PAD], [UNK], [CLS], [SEP], [MASK]


def _corpus(n: int = 3000, t: int = 40, seed: int = 0):
    """Token ids (n, t) of random lengths: [CLS] words [SEP] [PAD]…, and the bool mask of special tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, _VOCAB, (n, t), generator=g)
    lengths = torch.randint(6, t + 1, (n,), generator=g)
    pos = torch.arange(t)
    ids[:, 0] = 2
    ids[pos >= lengths[:, None]] = 0
    ids[torch.arange(n), lengths - 1] = 3
    return ids, (ids == 0) | (ids == 2) | (ids == 3)


def check_mlm_corrupt(fn, seed: int = 0) -> str:
    """Chapter 12, exercise "BERT's corruption, 15 % and 80/10/10".

    ``fn(ids, special, vocab_size, mask_id, generator) -> (corrupted, labels)`` takes token ids (N, T) int64,
    a bool ``special`` (N, T) (True: never select), the vocabulary size, the id of [MASK] and a
    ``torch.Generator``. It selects each non-special token with probability 0.15; a selected token becomes
    [MASK] with probability 0.8, a uniformly random id in [0, vocab_size) with probability 0.1, and stays
    itself otherwise. ``labels`` holds the original id at the selected positions and −100 elsewhere.
    """
    ids, special = _corpus(seed=seed)
    out = fn(ids.clone(), special.clone(), _VOCAB, _MASK, torch.Generator().manual_seed(seed))
    assert isinstance(out, tuple) and len(out) == 2, "return a pair (corrupted, labels)"
    corrupted, labels = out
    for name, t in (("corrupted", corrupted), ("labels", labels)):
        assert isinstance(t, torch.Tensor) and t.shape == ids.shape, \
            f"{name} must be a tensor shaped like ids {tuple(ids.shape)}, got {getattr(t, 'shape', type(t))}"
        assert not t.is_floating_point(), f"{name} must hold integer token ids, got dtype {t.dtype}"
    assert torch.equal(corrupted[special], ids[special]), "a special token ([CLS], [SEP] or [PAD]) was changed"
    sel = labels != -100
    assert not (sel & special).any(), "a special token was selected: labels must be -100 there"
    assert torch.equal(labels[sel], ids[sel]), "labels must hold the ORIGINAL token at each selected position"
    rate = sel.sum().item() / (~special).sum().item()
    if abs(rate - 0.15 * 0.8) < 0.01 and bool((corrupted[sel] == _MASK).all()):
        raise AssertionError(f"{100 * rate:.1f}% of the tokens are labelled: label every selected token (15%), "
                             "not only those replaced by [MASK] — the kept and random ones are predicted too")
    assert torch.equal(corrupted[~sel], ids[~sel]), \
        "a token that was not selected changed (only the selected 15 % may be corrupted, and each must be labelled)"
    assert abs(rate - 0.15) < 0.01, f"{100 * rate:.1f}% of the non-special tokens were selected; expected 15%"
    n = sel.sum().item()
    masked = (sel & (corrupted == _MASK)).sum().item() / n
    same = (sel & (corrupted == ids)).sum().item() / n
    random = 1 - masked - same
    if masked > 0.97:
        raise AssertionError("every selected token became [MASK]: 10% must get a random token and 10% stay as they "
                             "are, or the model never learns about tokens it can see (and [MASK] never occurs "
                             "when fine-tuning)")
    assert abs(masked - 0.8) < 0.02, f"{100 * masked:.1f}% of the selected tokens became [MASK]; expected 80%"
    assert abs(same - 0.1) < 0.02 and abs(random - 0.1) < 0.02, \
        f"of the selected tokens {100 * random:.1f}% got a random id and {100 * same:.1f}% stayed; expected 10% and 10%"
    assert corrupted.min() >= 0 and corrupted.max() < _VOCAB, "random replacements must be ids in [0, vocab_size)"
    return (f"correct: {100 * rate:.1f}% selected; of those {100 * masked:.1f}% [MASK], {100 * random:.1f}% random, "
            f"{100 * same:.1f}% unchanged")


def _flip_reference(grad, table, ids):
    """(E_v − E_{ids_t}) · g_t for every position t and token v: (N, T, V)."""
    return grad @ table.T - (grad * table[ids]).sum(-1, keepdim=True)


def check_flip_scores(fn, trials: int = 6, seed: int = 0) -> str:
    """Chapter 12, exercise "The first-order score of a token flip".

    ``fn(grad, table, ids) -> scores`` takes the loss gradient w.r.t. the word vectors ``grad`` (N, T, d),
    the embedding table ``table`` (V, d) and the token ids (N, T), and returns (N, T, V): the first-order
    change of the loss when token t is replaced by token v, ``(table[v] − table[ids[n, t]]) · grad[n, t]``.
    """
    g = torch.Generator().manual_seed(seed)
    for trial in range(trials):
        n, t, d, v = 1 + trial % 3, 2 + trial, 3 + 2 * trial, 7 + 3 * trial
        grad = torch.randn(n, t, d, generator=g, dtype=torch.float64)
        table = torch.randn(v, d, generator=g, dtype=torch.float64)
        ids = torch.randint(v, (n, t), generator=g)
        got = fn(grad.clone(), table.clone(), ids.clone())
        assert isinstance(got, torch.Tensor) and got.shape == (n, t, v), \
            f"trial {trial}: expected a tensor (N, T, V) = {(n, t, v)}, got {getattr(got, 'shape', type(got))}"
        ref = _flip_reference(grad, table, ids)
        got = got.double()
        if (got - ref).abs().max() <= 1e-8:
            continue
        if (got + ref).abs().max() <= 1e-8:
            raise AssertionError("the sign is flipped: replacing e_t by e_v changes the loss by +(e_v − e_t)·g")
        if (got - grad @ table.T).abs().max() <= 1e-8:
            raise AssertionError("you left out the current token's term −e_t·g: without it the scores rank the "
                                 "candidates of ONE position correctly but cannot compare different positions")
        raise AssertionError(f"trial {trial}: scores differ from (table[v] − table[ids[n, t]]) · grad[n, t] by up to "
                             f"{(got - ref).abs().max():.3g}")
    return "correct: first-order loss changes of every single-token flip"
