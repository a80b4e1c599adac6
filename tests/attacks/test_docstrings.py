"""The attacks' docstrings stay honest: their examples run, and their Args match the signatures."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re

import pytest
import torch

import advcourse.attacks as attacks

# Every public attack or evaluation helper: each documents every parameter and has an example.
PUBLIC = [
    "fgsm", "fgm", "bim", "pgd", "deepfool", "cw_l2", "cw_linf", "cw_l0", "cw_objective", "lbfgs",
    "lbfgs_untargeted", "jsma", "square", "square_p_schedule", "transfer", "gaussian_rubbish",
    "robust_accuracy", "robust_mask", "accuracy_vs_eps", "worst_case_over", "transfer_matrix",
    "strong_evaluation", "distortion", "input_gradient", "zero_gradient_fraction", "audit", "audit_table",
    "embedding_pgd", "nearest_neighbours", "word_substitution",
    "apgd", "apgd_targeted", "apgd_checkpoints", "dlr_loss",
]

# The modules holding public attacks or helpers: each must contain at least one example.
WITH_EXAMPLES = {"apgd", "fgsm", "pgd", "deepfool", "cw", "lbfgs", "jsma", "square", "transfer", "robustness",
                 "gradients", "audit", "text"}

# `import advcourse.attacks.pgd` would give the *function* pgd (the package re-exports it under the
# module's name), so modules are imported by their full name.
MODULES = ["advcourse.attacks"] + [
    f"advcourse.attacks.{info.name}" for info in pkgutil.iter_modules(attacks.__path__)
]

_CATCH_ALL = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_ENTRY = re.compile(r"(\*{0,2}[A-Za-z_]\w*)\s*(?:\([^)]*\))?:(?:\s|$)")


def args_entries(doc: str) -> list[str] | None:
    """The parameter names listed under ``Args:`` (in order), None if there is no Args section.

    An entry is a line ``name: description`` (or ``name (type): ...``) at the indentation of the
    first line under ``Args:``; deeper-indented lines continue the entry, and the section ends at
    the first non-blank line indented no deeper than ``Args:`` itself.
    """
    lines = doc.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Args:"]
    if not starts:
        return None
    base = len(lines[starts[0]]) - len(lines[starts[0]].lstrip())
    names, entry_indent = [], None
    for line in lines[starts[0] + 1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= base:
            break
        if entry_indent is None:
            entry_indent = indent
        if indent == entry_indent:
            m = _ENTRY.match(line.strip())
            if m:
                names.append(m.group(1).lstrip("*"))
    return names


def docstring_problems(func) -> list[str]:
    """What is wrong with ``func``'s docstring: missing sections, parameters or examples."""
    doc = inspect.getdoc(func) or ""
    problems = []
    params = [p.name for p in inspect.signature(func).parameters.values() if p.kind not in _CATCH_ALL]
    catch_alls = {p.name for p in inspect.signature(func).parameters.values() if p.kind in _CATCH_ALL}
    entries = args_entries(doc)
    if entries is None:
        problems.append("no 'Args:' section")
    else:
        listed = [e for e in entries if e not in catch_alls]
        missing = [p for p in params if p not in listed]
        extra = [e for e in listed if e not in params]
        if missing:
            problems.append(f"parameters missing under Args: {missing}")
        if extra:
            problems.append(f"Args entries that are not parameters: {extra}")
        if not missing and not extra and listed != params:
            problems.append(f"Args not in signature order: {listed} != {params}")
        if len(listed) != len(set(listed)):
            problems.append(f"a parameter is listed twice under Args: {listed}")
    if "Returns:" not in doc:
        problems.append("no 'Returns:' section")
    examples = doc.split("Examples:", 1)
    if len(examples) < 2:
        problems.append("no 'Examples:' section")
    elif ">>>" not in examples[1]:
        problems.append("the 'Examples:' section has no doctest")
    return problems


@pytest.mark.parametrize("module_name", MODULES)
def test_doctests_pass(module_name):
    module = importlib.import_module(module_name)
    state = torch.get_rng_state()  # the examples seed the global RNG; leave it as we found it
    try:
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                                 verbose=False, report=False)
    finally:
        torch.set_rng_state(state)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed in {module_name}"
    if module_name.rsplit(".", 1)[-1] in WITH_EXAMPLES:
        assert result.attempted > 0, f"{module_name} holds public attacks but has no doctest examples"


def test_every_public_module_is_doctested():
    assert {f"advcourse.attacks.{m}" for m in WITH_EXAMPLES} <= set(MODULES)


@pytest.mark.parametrize("name", PUBLIC)
def test_docstring_documents_every_parameter(name):
    assert name in attacks.__all__
    func = getattr(attacks, name)
    assert docstring_problems(func) == []


# --- the checker itself: it must notice what it is meant to catch -----------------------------


def _documented(model, x, y, eps=0.1, *, steps=3, **kw):
    """A fake attack, documented completely.

    Args:
        model: a model.
        x (Tensor): inputs, with a description
            that wraps onto a second line: not an entry.
        y: labels.
        eps: radius.
        steps: number of steps.
        **kw: anything else.

    Returns:
        Nothing useful.

    Examples:
        >>> 1 + 1
        2
    """


def _missing_param(model, x, y, eps=0.1, *, steps=3):
    """A fake attack whose docstring forgets ``eps``.

    Args:
        model: a model.
        x: inputs.
        y: labels.
        steps: number of steps.

    Returns:
        Nothing useful.

    Examples:
        >>> 1 + 1
        2
    """


def _param_only_in_text(model, x, y, eps=0.1):
    """A fake attack that names ``eps`` in a description but gives it no entry.

    Args:
        model: a model.
        x: inputs; see eps: below.
        y: labels, eps: the radius.

    Returns:
        Nothing useful.

    Examples:
        >>> 1 + 1
        2
    """


def _wrong_order(model, x, y):
    """Args out of order.

    Args:
        model: a model.
        y: labels.
        x: inputs.

    Returns:
        Nothing useful.

    Examples:
        >>> 1 + 1
        2
    """


def _no_examples(model, x):
    """No examples.

    Args:
        model: a model.
        x: inputs.

    Returns:
        Nothing useful.
    """


def test_checker_accepts_a_complete_docstring():
    assert args_entries(inspect.getdoc(_documented)) == ["model", "x", "y", "eps", "steps", "kw"]
    assert docstring_problems(_documented) == []


@pytest.mark.parametrize(
    "func, expected",
    [
        (_missing_param, "parameters missing under Args: ['eps']"),
        (_param_only_in_text, "parameters missing under Args: ['eps']"),
        (_wrong_order, "Args not in signature order"),
        (_no_examples, "no 'Examples:' section"),
    ],
)
def test_checker_catches_a_bad_docstring(func, expected):
    problems = docstring_problems(func)
    assert any(expected in p for p in problems), problems
