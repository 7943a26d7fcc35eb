"""The kernel package is layered as ``ioasid.kernel.LAYERS`` says: every module imports only
modules below it, at module level; the API and the layers below the kernel never import it."""

from __future__ import annotations

import ast
from pathlib import Path

import ioasid.kernel
from ioasid.kernel import LAYERS

KERNEL = Path(ioasid.kernel.__file__).parent
ORDER = [name for layer in LAYERS for name in layer]


def _kernel_imports(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """(imported kernel module, line, at module level) for every import in ``tree``."""
    top = {id(node) for node in ast.iter_child_nodes(tree)}
    for node in ast.iter_child_nodes(tree):  # `if TYPE_CHECKING:` blocks count as top level
        if isinstance(node, ast.If):
            top |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "ioasid.kernel":
                names = [a.name for a in node.names]
            elif node.module.startswith("ioasid.kernel."):
                names = [node.module.split(".")[2]]
        elif isinstance(node, ast.Import):
            prefix = "ioasid.kernel."
            names = [a.name.split(".")[2] for a in node.names if a.name.startswith(prefix)]
        out += [(n, node.lineno, id(node) in top) for n in names]
    return out


def test_every_module_is_in_a_layer() -> None:
    modules = {p.stem for p in KERNEL.glob("*.py")} - {"__init__"}
    assert modules == set(ORDER), modules ^ set(ORDER)


def test_imports_go_downward_only_and_at_module_level() -> None:
    wrong = []
    for name in ORDER:
        tree = ast.parse((KERNEL / f"{name}.py").read_text())
        for target, line, top in _kernel_imports(tree):
            if not top:
                wrong.append(f"{name}.py:{line} imports {target} inside a function")
            elif ORDER.index(target) >= ORDER.index(name):
                wrong.append(f"{name}.py:{line} imports {target}, which is not below it")
    assert not wrong, "\n".join(wrong)


def test_the_public_api_and_the_layers_below_the_kernel_never_import_it() -> None:
    """DESIGN's one rule: the API crosses the ioctl ABI (it never reaches into the simulator),
    and ``uapi``, ``hw`` and ``topology`` sit below the kernel."""
    src = KERNEL.parent
    users = sorted(
        str(p.relative_to(src))
        for sub in ("api", "uapi", "hw", "topology")
        for p in (src / sub).rglob("*.py")
        if "from ioasid.kernel" in p.read_text() or "import ioasid.kernel" in p.read_text()
    )
    assert not users, users
