"""The package's layers, kept by its imports (read from the source with ``ast``).

From the bottom up, each unit may import only units of *lower* layers (and itself, and the
package root for ``__version__``):

0. ``data``, ``stamp``, ``report``, ``plot`` — the kit's foundations;
1. ``runtime`` (device, seeds, profiles; a run carries its stamp);
2. ``evaluate`` (a model's outputs, predictions, accuracy) and ``models`` (architectures);
3. ``attacks`` (attacks, robustness evaluation, the gradient-masking audit);
4. ``cache`` and ``train`` (load-or-train, the one training loop);
5. ``defenses`` (adversarial training, distillation, masked models);
6. ``experiments`` (one module per chapter) and ``exercises`` (one checker module per chapter);
7. ``grade`` (``advcourse grade``: executes students' notebooks and runs the exercise checkers).

Experiment modules never import one another: what two chapters share moves down a layer.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "src" / "advcourse"
LAYERS = [("data", "stamp", "report", "plot"), ("runtime",), ("evaluate", "models"), ("attacks",),
          ("cache", "train"), ("defenses", "checkpoint"), ("experiments", "exercises"), ("grade",)]
LAYER = {unit: k for k, units in enumerate(LAYERS) for unit in units}
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def dotted(path: pathlib.Path) -> list:
    """``src/advcourse/attacks/pgd.py`` -> ["advcourse", "attacks", "pgd"]."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imported(path: pathlib.Path):
    """Every advcourse module ``path`` imports (also inside functions), as dotted lists."""
    here = dotted(path)
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "advcourse":
                    yield alias.name.split(".")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "advcourse":
                target = node.module.split(".")
            else:
                continue
            if node.module is None or len(target) == 1:  # "from . import x" / "from advcourse import x"
                for alias in node.names:
                    yield target + [alias.name]
            else:
                yield target


def test_every_unit_has_a_layer():
    units = {dotted(p)[1] for p in MODULES}
    assert units <= set(LAYER), f"modules outside the layers: {sorted(units - set(LAYER))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: "/".join(dotted(p)[1:]))
def test_imports_go_down_the_layers(path):
    here = dotted(path)
    unit = here[1]
    for target in imported(path):
        if len(target) == 1 or target[1] == "__version__":
            continue  # the package root
        other = target[1]
        if other == unit:
            if unit == "experiments" and len(here) > 2 and len(target) > 2 and target[2] != here[2]:
                pytest.fail(f"{'.'.join(here)} imports {'.'.join(target)}: experiment modules never import "
                            "one another (move the shared code down a layer)")
            continue
        assert other in LAYER, f"{'.'.join(here)} imports unknown unit {'.'.join(target)}"
        assert LAYER[other] < LAYER[unit], (
            f"{'.'.join(here)} (layer {LAYER[unit]}) imports {'.'.join(target)} (layer {LAYER[other]}): "
            "imports must go down the layers")


def test_the_rule_catches_a_violation(tmp_path, monkeypatch):
    """The checker itself: an upward import and an experiment-to-experiment import are both found."""
    fake = tmp_path / "advcourse"
    (fake / "attacks").mkdir(parents=True)
    (fake / "experiments").mkdir()
    (fake / "attacks" / "bad.py").write_text("from ..train import fit\n")
    (fake / "experiments" / "ch02_x.py").write_text("from .ch01_y import f\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    with pytest.raises(AssertionError, match="imports must go down"):
        test_imports_go_down_the_layers(fake / "attacks" / "bad.py")
    with pytest.raises(pytest.fail.Exception, match="never import one another"):
        test_imports_go_down_the_layers(fake / "experiments" / "ch02_x.py")
