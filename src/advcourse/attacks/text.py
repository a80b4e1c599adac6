"""Attacks on text classifiers: PGD on the word embeddings, and greedy word substitution.

Text is discrete, so the image attacks' ε-ball has no direct meaning: a token id is either changed or
not. The two attacks here take the two ways out.

* :func:`embedding_pgd` relaxes the input to the continuous word vectors and runs PGD there, in a
  per-token L2 ball of radius ``eps`` around each real token's embedding (Miyato et al. 2017 train on
  such perturbations; Chapter 8 attacks a Transformer the same way). The result is a tensor of word
  vectors, most of which are no token at all.
* :func:`word_substitution` stays discrete: it replaces up to ``max_changes`` tokens, each by one of a
  few allowed substitutes (e.g. its nearest neighbours in embedding space), greedily, choosing each
  substitution by a first-order estimate of the loss change (HotFlip, Ebrahimi et al. 2018) checked
  with exact forward passes, or by the exact loss of every allowed substitution (a greedy search in
  the spirit of TextFooler, Jin et al. 2020).

The contract of :mod:`advcourse.attacks`, in text's own terms: integer token ids (N, T) and an
attention mask (N, T) in; special tokens (``special_ids``, e.g. [CLS], [SEP]) and padding (mask 0)
never changed; embeddings inside the per-token ball exactly (checked in float64), or at most
``max_changes`` substitutions; inputs never modified; the model evaluated in eval mode and its mode
restored; no parameter gradients accumulated; bad arguments raise errors that name them.

The model is any ``nn.Module`` called as ``model(input_ids=..., attention_mask=...)`` or
``model(inputs_embeds=..., attention_mask=...)`` that returns logits (N, K), such as
:class:`advcourse.models.bert.BertClassifier`; ``embedding`` is its word-embedding table.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import check_logits, check_nonneg, check_positive_int, eval_mode

__all__ = ["embedding_pgd", "nearest_neighbours", "word_substitution"]


# --- argument checks ------------------------------------------------------------------------------------------------

def _table(embedding) -> torch.Tensor:
    """The (V, d) weight of ``embedding`` (an ``nn.Embedding`` or a tensor), detached."""
    w = embedding.weight if isinstance(embedding, nn.Embedding) else embedding
    if not isinstance(w, torch.Tensor) or w.ndim != 2 or not w.is_floating_point():
        raise TypeError("embedding must be an nn.Embedding or a float tensor (V, d), got "
                        f"{type(embedding).__name__}{'' if not isinstance(w, torch.Tensor) else tuple(w.shape)}")
    return w.detach()


def _check_text(model, ids, attention_mask, y, vocab_size: int):
    """Validate the shared arguments; returns ``(mask as bool, y as long)``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"ids must be an integer tensor of token ids (N, T), got "
                        f"{ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__}")
    if ids.ndim != 2:
        raise ValueError(f"ids must have shape (N, T), got {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"ids must be token ids in [0, {vocab_size}) (the embedding's rows), got values in "
                         f"[{int(ids.min())}, {int(ids.max())}]")
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != ids.shape:
        shape = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask)
        raise ValueError(f"attention_mask must have the shape of ids {tuple(ids.shape)}, got {shape}")
    if attention_mask.numel() and not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token)")
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"y must be an integer tensor of labels (N,), got "
                        f"{y.dtype if isinstance(y, torch.Tensor) else type(y).__name__}")
    if y.shape != (ids.shape[0],):
        raise ValueError(f"y must have shape (N,) = ({ids.shape[0]},), got {tuple(y.shape)}")
    return attention_mask.bool(), y.to(device=ids.device, dtype=torch.long)


def _modifiable(ids, mask, special_ids, modifiable):
    """Bool (N, T): real tokens that are not special (and, if given, allowed by ``modifiable``)."""
    if isinstance(special_ids, (str, bytes)) or not isinstance(special_ids, Iterable):
        raise TypeError(f"special_ids must be an iterable of token ids, got {type(special_ids).__name__}")
    special = torch.tensor(sorted({int(s) for s in special_ids}), dtype=ids.dtype, device=ids.device)
    ok = mask & ~torch.isin(ids, special)
    if modifiable is not None:
        if not isinstance(modifiable, torch.Tensor) or modifiable.shape != ids.shape or modifiable.dtype != torch.bool:
            raise ValueError(f"modifiable must be a bool tensor with the shape of ids {tuple(ids.shape)}")
        ok &= modifiable
    return ok


def _forward(model, mask, *, ids=None, embeds=None, y=None):
    logits = model(input_ids=ids, attention_mask=mask.long(), inputs_embeds=embeds)
    check_logits(logits, y)
    return logits


# --- embedding-space PGD --------------------------------------------------------------------------------------------

def _project(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Scale each token's perturbation (…, d) into the L2 ball of radius eps, verified in float64."""
    norms = delta.to(torch.float64).norm(dim=-1, keepdim=True)
    scale = (eps / norms.clamp_min(1e-30)).clamp(max=1.0)
    out = (delta.to(torch.float64) * scale * (1 - 1e-7)).to(delta.dtype)  # a hair inside, for float32 rounding
    over = out.to(torch.float64).norm(dim=-1, keepdim=True) > eps
    return torch.where(over, torch.zeros_like(out), out)


def embedding_pgd(model: nn.Module, ids: torch.Tensor, attention_mask: torch.Tensor, y: torch.Tensor, eps: float,
                  alpha: float | None = None, steps: int = 10, *, embedding, special_ids: Iterable[int] = (),
                  modifiable: torch.Tensor | None = None, early_stop: bool = False) -> torch.Tensor:
    """PGD on the word embeddings of a text classifier, in a per-token L2 ball (Madry et al. 2018's
    attack on the continuous relaxation that Miyato et al. 2017 use for adversarial training).

    Starting from the clean word vectors ``e_t = E[ids_t]``, each step moves every modifiable token
    by ``alpha`` along its own normalised loss gradient and projects it back into
    ``||e'_t - e_t||_2 <= eps``. Special tokens and padding keep their vectors exactly. Per example
    the best iterate is kept (a misclassified one beats a correct one, then the higher loss), as
    :func:`advcourse.attacks.pgd` does. The output is a tensor of vectors, not of tokens: the model
    must accept ``inputs_embeds``.

    Args:
        model: classifier called as ``model(inputs_embeds=e, attention_mask=m)`` → logits (N, K);
            evaluated in eval mode, its previous mode is restored.
        ids: token ids (N, T), integer, in [0, V).
        attention_mask: (N, T), 1 for real tokens and 0 for padding.
        y: true labels (N,) in [0, K).
        eps: radius of each token's L2 ball, >= 0 (in the units of the embedding table; compare it
            with the distance between neighbouring tokens). ``eps = 0`` returns the clean vectors.
        alpha: step size >= 0; default (None) ``2.5 * eps / steps``.
        steps: gradient steps, int >= 0.
        embedding: the model's word-embedding table, an ``nn.Embedding`` or a (V, d) tensor.
        special_ids: token ids never perturbed (e.g. [CLS], [SEP], [PAD]); padding never is.
        modifiable: optional bool (N, T): only these positions may move.
        early_stop: stop moving an example once an iterate is misclassified. Default False.

    Returns:
        Word vectors (N, T, d) with the embedding's dtype and device: at every modifiable position
        within L2 distance ``eps`` of ``E[ids]`` (checked in float64), equal to ``E[ids]`` elsewhere.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``ids`` is not an integer tensor, ``y`` holds
            no integer labels, ``embedding`` is neither an ``nn.Embedding`` nor a (V, d) tensor.
        ValueError: bad shapes, token ids outside the table, a mask other than 0/1, negative or
            non-finite ``eps``/``alpha``, ``steps < 0``, labels out of range, or the model does not
            return (N, K) logits.

    Examples:
        >>> import torch
        >>> from advcourse.models.bert import BertClassifier, BertConfig
        >>> from advcourse.attacks.text import embedding_pgd
        >>> _ = torch.manual_seed(0)
        >>> cfg = BertConfig(vocab_size=50, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
        ...                  max_position=16)
        >>> model = BertClassifier(cfg, num_classes=2).eval()
        >>> ids = torch.tensor([[1, 7, 8, 9, 2], [1, 5, 6, 2, 0]])  # [CLS] … [SEP] [PAD]
        >>> mask = (ids != 0).long()
        >>> y = torch.tensor([0, 1])
        >>> emb = model.bert.embeddings.word_embeddings
        >>> adv = embedding_pgd(model, ids, mask, y, eps=0.5, steps=5, embedding=emb, special_ids=[0, 1, 2])
        >>> adv.shape
        torch.Size([2, 5, 32])
        >>> moved = (adv - emb(ids)).norm(dim=-1)
        >>> bool((moved <= 0.5).all()), bool((moved[:, 0] == 0).all()), bool(moved[1, 4] == 0)
        (True, True, True)
    """
    table = _table(embedding)
    mask, y = _check_text(model, ids, attention_mask, y, table.shape[0])
    eps = check_nonneg(eps, "eps")
    steps = check_positive_int(steps, "steps", allow_zero=True)
    alpha = 2.5 * eps / max(steps, 1) if alpha is None else alpha
    alpha = check_nonneg(alpha, "alpha")
    movable = _modifiable(ids, mask, special_ids, modifiable)[..., None]  # (N, T, 1)
    clean = F.embedding(ids, table)  # (N, T, d), a fresh tensor: the table is never written
    with eval_mode(model):
        with torch.no_grad():
            logits = _forward(model, mask, embeds=clean, y=y)
        if eps == 0 or ids.shape[0] == 0:
            return clean
        best = clean.clone()
        best_succ = logits.argmax(1) != y
        best_loss = F.cross_entropy(logits, y, reduction="none")
        delta = torch.zeros_like(clean)
        active = torch.ones_like(y, dtype=torch.bool)
        for t in range(steps + 1):
            e = (clean + delta).requires_grad_(t < steps)
            with torch.enable_grad():
                logits = _forward(model, mask, embeds=e)
                loss = F.cross_entropy(logits, y, reduction="none")
            with torch.no_grad():
                succ = logits.argmax(1) != y
                better = active & ((succ & ~best_succ) | ((succ == best_succ) & (loss > best_loss)))
                best = torch.where(better[:, None, None], e.detach(), best)
                best_loss = torch.where(better, loss.detach(), best_loss)
                best_succ |= succ & active
                if early_stop:
                    active &= ~succ
            if t == steps or not bool(active.any()):
                break
            (g,) = torch.autograd.grad(loss.sum(), e)
            with torch.no_grad():
                g = g * movable
                step = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # per-token steepest ascent
                moved = _project(delta + alpha * step, eps) * movable
                delta = torch.where(active[:, None, None], moved, delta)
    with torch.no_grad():  # the final guarantee, whatever the iterates did
        return clean + _project(best - clean, eps) * movable


# --- word substitution -----------------------------------------------------------------------------------------------

def nearest_neighbours(embedding, k: int, allowed: torch.Tensor | None = None, tokens: torch.Tensor | None = None,
                       batch_size: int = 4096) -> torch.Tensor:
    """For every token, its ``k`` nearest other tokens by cosine similarity of their embeddings.

    A candidate table for :func:`word_substitution`. Only tokens with ``allowed`` True (e.g. whole
    words, no sub-word pieces or special tokens) are candidates or get candidates; the other rows
    are all −1. ``tokens`` restricts the work to the rows that will be needed (e.g. the ids of the
    sentences to attack): a full table of a 30,000-token vocabulary costs V²d multiply-adds.

    Args:
        embedding: an ``nn.Embedding`` or a (V, d) float tensor.
        k: neighbours per token, int >= 1.
        allowed: optional bool (V,); default every token.
        tokens: optional integer tensor of token ids (any shape): only their rows are filled.
        batch_size: rows compared at a time (memory), int >= 1.

    Returns:
        Long tensor (V, k) of token ids, nearest first, −1 where a token has no candidates.

    Examples:
        >>> import torch
        >>> from advcourse.attacks.text import nearest_neighbours
        >>> table = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.1, 1.0], [-1.0, 0.0]])
        >>> nearest_neighbours(table, k=2).tolist()
        [[1, 2], [0, 2], [1, 0], [2, 1]]
        >>> nearest_neighbours(table, k=1, allowed=torch.tensor([True, True, False, True])).tolist()
        [[1], [0], [-1], [1]]
        >>> nearest_neighbours(table, k=1, tokens=torch.tensor([[0, 3]])).tolist()
        [[1], [-1], [-1], [2]]
    """
    table = _table(embedding)
    k = check_positive_int(k, "k")
    batch_size = check_positive_int(batch_size, "batch_size")
    v = table.shape[0]
    allowed = torch.ones(v, dtype=torch.bool, device=table.device) if allowed is None else allowed.to(table.device)
    if allowed.shape != (v,) or allowed.dtype != torch.bool:
        raise ValueError(f"allowed must be a bool tensor of shape ({v},), got {tuple(allowed.shape)} {allowed.dtype}")
    if k > int(allowed.sum()) - 1:
        raise ValueError(f"k must be at most the number of allowed tokens minus one ({int(allowed.sum()) - 1}), "
                         f"got {k}")
    unit = F.normalize(table.float(), dim=-1)
    out = torch.full((v, k), -1, dtype=torch.long, device=table.device)
    rows = allowed.nonzero().squeeze(1)
    if tokens is not None:
        wanted = torch.zeros(v, dtype=torch.bool, device=table.device)
        wanted[tokens.flatten().long().to(table.device)] = True
        rows = (allowed & wanted).nonzero().squeeze(1)
    for chunk in rows.split(batch_size):
        sim = unit[chunk] @ unit.T  # (B, V)
        sim[:, ~allowed] = -float("inf")
        sim[torch.arange(len(chunk), device=chunk.device), chunk] = -float("inf")  # not itself
        out[chunk] = sim.topk(k, dim=1).indices
    return out


def word_substitution(model: nn.Module, ids: torch.Tensor, attention_mask: torch.Tensor, y: torch.Tensor,
                      max_changes: int, *, embedding, candidates: torch.Tensor, special_ids: Iterable[int] = (),
                      modifiable: torch.Tensor | None = None, guide: str = "gradient", n_try: int = 8) -> torch.Tensor:
    """Greedy word substitution: change up to ``max_changes`` tokens, one at a time, to flip the prediction.

    Each round, for every example not yet misclassified, every still unchanged modifiable position
    ``t`` and every allowed substitute ``c`` of its token (a row of ``candidates``) is scored, and the
    substitution with the highest loss is made:

    * ``guide="gradient"`` (HotFlip, Ebrahimi et al. 2018): rank all pairs by the first-order loss
      change ``(E[c] − E[ids_t]) · ∇_{e_t} L`` from one backward pass, then evaluate the top ``n_try``
      pairs exactly and keep the best;
    * ``guide="loss"``: evaluate every pair exactly (one forward pass each; a greedy search like the
      word-importance search of TextFooler, Jin et al. 2020 — slower, stronger per step).

    An example stops as soon as it is misclassified, so the number of changed tokens of a successful
    example is the number this greedy search needed; the first ``k`` rounds of a run with a larger
    budget are exactly the attack with budget ``k``.

    Args:
        model: classifier called as ``model(input_ids=..., attention_mask=...)`` and
            ``model(inputs_embeds=..., attention_mask=...)`` → logits (N, K); evaluated in eval mode,
            its previous mode is restored.
        ids: token ids (N, T), integer, in [0, V).
        attention_mask: (N, T), 1 for real tokens and 0 for padding.
        y: true labels (N,) in [0, K).
        max_changes: most tokens changed per example, int >= 0 (0 returns a copy of ``ids``).
        embedding: the model's word-embedding table, an ``nn.Embedding`` or a (V, d) tensor.
        candidates: long (V, C): the allowed substitutes of each token id, −1 for none (e.g. from
            :func:`nearest_neighbours`).
        special_ids: token ids never changed (e.g. [CLS], [SEP], [PAD]); padding never is.
        modifiable: optional bool (N, T): only these positions may change (e.g. whole words).
        guide: ``"gradient"`` (default) or ``"loss"``, see above.
        n_try: pairs evaluated exactly per round with ``guide="gradient"``, int >= 1.

    Returns:
        Token ids (N, T) with the dtype and device of ``ids``, differing from ``ids`` in at most
        ``max_changes`` modifiable positions per example, each changed token replaced by one of its
        candidates.

    Raises:
        TypeError: bad ``model``, ``ids``, ``y`` or ``embedding`` types, or a non-int ``max_changes``/``n_try``.
        ValueError: bad shapes, ids outside the table, a mask other than 0/1, a ``candidates`` table of
            the wrong shape or with ids outside [−1, V), an unknown ``guide``, labels out of range, or
            a model that does not return (N, K) logits.

    Examples:
        >>> import torch
        >>> from advcourse.models.bert import BertClassifier, BertConfig
        >>> from advcourse.attacks.text import nearest_neighbours, word_substitution
        >>> _ = torch.manual_seed(0)
        >>> cfg = BertConfig(vocab_size=50, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
        ...                  max_position=16)
        >>> model = BertClassifier(cfg, num_classes=2).eval()
        >>> emb = model.bert.embeddings.word_embeddings
        >>> cand = nearest_neighbours(emb, k=5, allowed=torch.arange(50) >= 5)  # ids 0-4 are special
        >>> ids = torch.tensor([[1, 7, 8, 9, 10, 2], [1, 5, 6, 2, 0, 0]])
        >>> mask = (ids != 0).long()
        >>> y = model(ids, mask).argmax(1)  # attack the model's own predictions
        >>> adv = word_substitution(model, ids, mask, y, max_changes=2, embedding=emb, candidates=cand,
        ...                         special_ids=range(5))
        >>> changed = (adv != ids).sum(1)
        >>> bool((changed <= 2).all()), torch.equal(adv[:, 0], ids[:, 0]), torch.equal(adv[mask == 0], ids[mask == 0])
        (True, True, True)
    """
    table = _table(embedding)
    v = table.shape[0]
    mask, y = _check_text(model, ids, attention_mask, y, v)
    max_changes = check_positive_int(max_changes, "max_changes", allow_zero=True)
    n_try = check_positive_int(n_try, "n_try")
    if guide not in ("gradient", "loss"):
        raise ValueError(f"guide must be one of ['gradient', 'loss'], got {guide!r}")
    if (not isinstance(candidates, torch.Tensor) or candidates.ndim != 2 or candidates.shape[0] != v
            or candidates.is_floating_point()):
        raise ValueError(f"candidates must be an integer tensor ({v}, C) of substitute ids, got "
                         f"{tuple(candidates.shape) if isinstance(candidates, torch.Tensor) else type(candidates)}")
    if candidates.numel() and (int(candidates.min()) < -1 or int(candidates.max()) >= v):
        raise ValueError(f"candidates must hold token ids in [0, {v}) or -1 for none")
    candidates = candidates.to(device=ids.device, dtype=torch.long)
    free = _modifiable(ids, mask, special_ids, modifiable)  # (N, T): may still change
    adv = ids.clone()
    with eval_mode(model):
        with torch.no_grad():
            fooled = _forward(model, mask, ids=adv, y=y).argmax(1) != y
        for _ in range(max_changes):
            todo = (~fooled & free.any(1)).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            a, m, yy = adv[todo], mask[todo], y[todo]
            cand = candidates[a]  # (n, T, C): the substitutes of each current token
            valid = (cand >= 0) & free[todo][..., None]  # (n, T, C)
            if guide == "gradient":
                e = F.embedding(a, table).requires_grad_()
                with torch.enable_grad():
                    loss = F.cross_entropy(_forward(model, m, embeds=e), yy, reduction="sum")
                (g,) = torch.autograd.grad(loss, e)  # (n, T, d)
                with torch.no_grad():
                    gain = (F.embedding(cand.clamp(min=0), table) - e.detach()[:, :, None]) @ g[..., None]
                    gain = gain.squeeze(-1).masked_fill(~valid, -float("inf"))  # (n, T, C)
                    k = min(n_try, gain[0].numel())
                    top = gain.flatten(1).topk(k, dim=1).indices  # (n, k) flat (t, c) pairs
                    ok = torch.gather(valid.flatten(1), 1, top)
            else:
                flat_valid = valid.flatten(1)  # (n, T·C)
                top = torch.arange(flat_valid.shape[1], device=ids.device).expand(len(todo), -1)
                ok = flat_valid
            with torch.no_grad():
                n, k = top.shape
                pos = top // cand.shape[2]  # (n, k): the position of each pair
                new_tok = torch.gather(cand.flatten(1), 1, top)  # (n, k)
                trial = a[:, None, :].repeat(1, k, 1)  # (n, k, T)
                trial.scatter_(2, pos[..., None], new_tok.clamp(min=0)[..., None])
                flat = trial.flatten(0, 1)
                logits = torch.cat([_forward(model, mm, ids=tt) for tt, mm in
                                    zip(flat.split(512), m.repeat_interleave(k, 0).split(512))])
                trial_loss = F.cross_entropy(logits, yy.repeat_interleave(k), reduction="none").view(n, k)
                trial_loss = trial_loss.masked_fill(~ok, -float("inf"))
                pick = trial_loss.argmax(1)  # (n,)
                each = torch.arange(n, device=pick.device)
                has = ok.any(1)
                rows = todo[has]
                p_pos = pos[each, pick][has]
                adv[rows, p_pos] = new_tok[each, pick][has].to(adv.dtype)
                free[rows, p_pos] = False  # each position changes at most once
                free[todo[~has]] = False  # nothing left to try
                wrong = logits.view(n, k, -1)[each, pick].argmax(1) != yy
                fooled[rows] = wrong[has]
    return adv
