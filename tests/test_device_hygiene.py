"""Device hygiene, checked statically: a tensor the package creates inside an attack, a defence, a
model's forward pass or the training loop must be made on the device of the data it meets.

On a CPU every tensor is on the same device, so a missing ``device=`` only fails on a GPU — in a
student's Colab session, not in CI. This test reads the code instead: every call of a torch tensor
factory (``torch.zeros``, ``torch.arange``, ...) in those modules must pass ``device=`` (or
``**opts`` carrying it), be turned into Python numbers at once (``.tolist()``, ``.item()``), be
moved right away (``.to(...)``), or sit in a constructor (``__init__``: parameters and buffers
move with the module). ``*_like`` factories follow their argument and are always fine. The few
other calls are allowed below, each with the reason it is safe.
"""

import ast
import pathlib

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "advcourse"
SCANNED = ("attacks", "defenses", "models", "train.py")
FACTORIES = {"zeros", "ones", "rand", "randn", "randint", "randperm", "empty", "full", "arange", "tensor",
             "as_tensor", "eye", "linspace"}
CONVERTED = {"tolist", "item", "to", "cuda"}  # a method applied at once that leaves no stray CPU tensor

# (module, function): why its device-less factory calls are safe.
ALLOWED = {
    ("attacks/robustness.py", "transfer_matrix"): "a small table of Python numbers (.item()) kept on the CPU",
    ("models/bert.py", "encode"): "the tokenizer's output, on the CPU like every tokenizer's; callers move it",
    ("models/mae.py", "sincos_pos_embedding_2d"): "called from __init__ only (copied into a parameter)",
    ("models/swin.py", "relative_position_index"): "called from __init__ only (a registered buffer)",
    ("models/swin.py", "bands"): "a helper of shifted_window_mask",
    ("models/swin.py", "shifted_window_mask"): "its caller moves the mask with .to(x)",
    ("models/transformer.py", "sinusoidal_positions"): "called from __init__ only (a registered buffer)",
    ("train.py", "__iter__"): "a CPU permutation from a CPU generator; indexing a GPU tensor with CPU "
                              "indices is supported",
}


def _files():
    for name in SCANNED:
        path = SRC / name
        yield from sorted(path.glob("*.py")) if path.is_dir() else [path]


def offenders(path: pathlib.Path, root: pathlib.Path = SRC, allowed=ALLOWED) -> list[tuple[str, str, int, str]]:
    """The device-less tensor factory calls in ``path`` not in ``allowed``: (module, function, line, factory)."""
    tree = ast.parse(path.read_text())
    parent = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    module = path.relative_to(root).as_posix()
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                and node.func.attr in FACTORIES):
            continue
        if any(k.arg in ("device", None) for k in node.keywords):  # device=... or **opts
            continue
        up = parent.get(node)
        if isinstance(up, ast.Attribute) and up.attr in CONVERTED:
            continue
        function = up
        while function is not None and not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = parent.get(function)
        name = function.name if function is not None else "<module>"
        if name == "__init__" or (module, name) in allowed:
            continue
        found.append((module, name, node.lineno, f"torch.{node.func.attr}"))
    return found


def test_scanner_finds_a_device_less_factory(tmp_path):
    """The scan itself works: it flags the calls that break on a GPU and passes the safe ones."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import torch\n"
        "def attack(x):\n"
        "    noise = torch.rand(x.shape)\n"                      # flagged: on the CPU whatever x is
        "    steps = torch.zeros(len(x), device=x.device)\n"     # fine
        "    like = torch.zeros_like(x)\n"                       # fine
        "    n = torch.randint(0, 5, (1,)).item()\n"             # fine: a Python number
        "    return x + noise\n")
    assert offenders(sample, root=tmp_path) == [("sample.py", "attack", 3, "torch.rand")]


def test_no_tensor_without_device_in_attacks_defences_models_and_training():
    found = [hit for path in _files() for hit in offenders(path)]
    assert not found, ("tensor factories without device= (pass device=x.device, use *_like, or allow-list "
                       "with a reason):\n" + "\n".join(f"  {m}:{line} in {fn}(): {f}" for m, fn, line, f in found))


def test_allow_list_is_current():
    """Every allowed function still exists and still needs its entry (no stale exemptions)."""
    needed = {(m, fn) for path in _files() for m, fn, _, _ in offenders(path, allowed={})}
    assert set(ALLOWED) <= needed, f"stale entries: {sorted(set(ALLOWED) - needed)}"
