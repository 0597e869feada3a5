"""Layers point down: no import cycles in fmblur, runtime code never imports the evaluation, training or
benchmark layers, and evaluation and training do not import each other. Every import counts, also one
inside a function, so no cycle can hide there."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "fmblur"
TOP_LAYERS = ("fmblur.eval", "fmblur.train", "fmblur.bench", "fmblur.cli", "fmblur.space", "fmblur.__main__")
NEVER_FROM_RUNTIME = ("fmblur.eval", "fmblur.train", "fmblur.bench", "fmblur.cli", "fmblur.space")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        if any(part in ("weights", "examples") for part in path.relative_to(PACKAGE).parts):
            continue
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def import_graph() -> dict[str, set[str]]:
    """Module -> the fmblur modules it imports (a name imported from a package counts as its module)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {resolve(alias.name) for alias in node.names if alias.name.startswith("fmblur")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package
                    for _ in range(node.level - 1):
                        parent = parent.rpartition(".")[0]
                    base = f"{parent}.{base}" if base else parent
                if base.startswith("fmblur"):
                    targets |= {resolve(f"{base}.{alias.name}") for alias in node.names}
        graph[name] = {target for target in targets if target and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert {"fmblur.pipeline", "fmblur.geometry", "fmblur.detectors.base", "fmblur.eval.detection"} <= set(graph)
    assert "fmblur.detectors.views" in graph["fmblur.detectors.base"]  # a plain `from fmblur.x import y` is an edge


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_cycle_detection_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_runtime_code_never_imports_eval_train_or_bench():
    upward = {
        module: sorted(t for t in targets if _within(t, NEVER_FROM_RUNTIME))
        for module, targets in import_graph().items()
        if not _within(module, TOP_LAYERS)
    }
    assert {module: targets for module, targets in upward.items() if targets} == {}


def test_eval_and_train_do_not_import_each_other():
    graph = import_graph()
    crossing = [
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if (_within(module, ("fmblur.eval",)) and _within(target, ("fmblur.train",)))
        or (_within(module, ("fmblur.train",)) and _within(target, ("fmblur.eval",)))
    ]
    assert crossing == []


def test_importing_the_package_reads_no_file_of_the_repository():
    """Weights, calibration, model cards and results are read when first needed, not at import: importing
    fmblur on a machine without them (or to print --help) must not touch them."""
    script = f"""
import importlib, pkgutil, sys
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith({str(REPO)!r}):
        opened.append(args[0])
sys.addaudithook(hook)
import fmblur
for module in pkgutil.walk_packages(fmblur.__path__, "fmblur."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
print("\\n".join(p for p in opened if not p.endswith((".py", ".pyc")) and ".egg-info" not in p))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_anonymising_with_the_default_detectors_imports_no_torch(example, tmp_path):
    """The default detectors and landmarks run in onnxruntime; torch (about 3 s to import, more than the
    anonymisation of a photo) is imported only by what needs it: the Faster R-CNN variants, MTCNN, the ResNet18
    landmarks, training and evaluation."""
    script = (
        "import sys; from fmblur.cli import main; "
        f"code = main(['image', {str(example.path)!r}, '-o', {str(tmp_path)!r}, '-q']); "
        "print(code, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.split() == ["0", "False"]
    assert any(tmp_path.iterdir()), "the photo was anonymised"
