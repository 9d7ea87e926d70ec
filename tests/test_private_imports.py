"""No private name crosses a package boundary inside softprompt.

A name with a leading underscore (not a dunder) belongs to its package: another package of
softprompt may not import it (`from softprompt.train.trainer import _load_data`), reach it through
a module (`trainer_module._load_data`), or call it on an object when only another package defines
it (`shell._load_data()` where `_load_data` is a Trainer method). What a package offers to others
gets a public name. The package of `softprompt.serve.engine` is `serve`; a top-level module such
as `softprompt.wrap` is its own package.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "softprompt"

# "<file under src/softprompt>: <private name>" -> why it is still there. Every entry names its owner,
# who removes it with the fix.
ALLOWED: dict[str, str] = {
}


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str:
    """softprompt.serve.engine -> serve; softprompt.wrap -> wrap; softprompt -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _absolute(node: ast.ImportFrom, module: str, is_init: bool) -> str | None:
    if not node.level:
        return node.module
    base = module.split(".") if is_init else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _defined_private_names(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, methods, module/class variables, self._x, keywords."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.keyword) and node.arg:  # set_defaults(_run=...), SimpleNamespace(_x=...)
            names.add(node.arg)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
                    elif isinstance(sub, ast.Attribute):
                        names.add(sub.attr)
    return {n for n in names if is_private(n)}


def violations(sources: dict[str, tuple[str, bool]], root_package: str = "softprompt") -> list[str]:
    """`sources`: label -> (source text, whether it is a package's __init__), labels as paths under
    the root (`serve/engine.py`). Returns 'label:line: what' for every private name crossing packages."""
    modules, trees, defined_in = {}, {}, {}
    for label, (text, is_init) in sources.items():
        parts = [root_package] + label[:-3].split("/")
        if is_init:
            parts.pop()
        modules[label] = ".".join(parts)
        trees[label] = ast.parse(text)
        for name in _defined_private_names(trees[label]):
            defined_in.setdefault(name, set()).add(package_of(modules[label]))
    module_names = set(modules.values())
    out = []
    for label, tree in trees.items():
        module, is_init = modules[label], sources[label][1]
        here = package_of(module)
        aliases: dict[str, str] = {}  # local name -> softprompt module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == root_package:
                        aliases[a.asname or a.name] = a.name
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(node, module, is_init)
                if not target or target.split(".")[0] != root_package:
                    continue
                there = package_of(target)
                private_module = next((p for p in target.split(".") if is_private(p)), None)
                if private_module and there != here:
                    out.append(f"{label}:{node.lineno}: imports from private module {target}")
                for a in node.names:
                    if f"{target}.{a.name}" in module_names:
                        aliases[a.asname or a.name] = f"{target}.{a.name}"
                    if is_private(a.name) and package_of(f"{target}.{a.name}") != here:
                        out.append(f"{label}:{node.lineno}: {a.name} from {target}")
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not is_private(node.attr):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in aliases:
                if package_of(aliases[owner.id]) != here:
                    out.append(f"{label}:{node.lineno}: {node.attr} from {aliases[owner.id]}")
                continue
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            packages = defined_in.get(node.attr)
            if packages and here not in packages:
                out.append(f"{label}:{node.lineno}: {node.attr} (defined only in {', '.join(sorted(packages))})")
    return sorted(set(out))


def source_tree() -> dict[str, tuple[str, bool]]:
    return {str(p.relative_to(SRC)): (p.read_text(encoding="utf-8"), p.name == "__init__.py")
            for p in sorted(SRC.rglob("*.py"))}


def _key(violation: str) -> str:
    label, _, what = violation.partition(": ")
    return f"{label.split(':')[0]}: {what.split()[0]}"


def test_no_private_name_crosses_a_package():
    found = [v for v in violations(source_tree()) if _key(v) not in ALLOWED]
    assert not found, ("private names used across packages (give them a public name in their package):\n"
                       + "\n".join(found))


def test_the_check_catches_each_form():
    sources = {
        "train/trainer.py": ("class Trainer:\n    def _load_data(self):\n        pass\n"
                             "def _helper():\n    pass\n", False),
        "train/__init__.py": ("", True),
        "train/_hidden.py": ("def shown():\n    pass\n", False),
        "experiments/cells.py": ("def _now():\n    pass\n", False),
        "experiments/grid.py": ("from softprompt.experiments.cells import _now\n"  # same package: allowed
                                "from .cells import _now as again\n", False),
        "experiments/a.py": ("from softprompt.train.trainer import _helper\n", False),
        "experiments/b.py": ("from softprompt.train import trainer\ntrainer._helper()\n", False),
        "experiments/c.py": ("import softprompt.train.trainer as t\nt._helper()\n", False),
        "experiments/d.py": ("def run(shell):\n    return shell._load_data()\n", False),
        "experiments/e.py": ("from softprompt.train._hidden import shown\n", False),
        "experiments/f.py": ("class X:\n    def _own(self):\n        return self._own() or other._own()\n"
                             "cfg = None\nname = cfg._name_or_path\n", False),  # not defined in softprompt
        "wrap.py": ("from softprompt.train.trainer import _helper\n", False),
    }
    found = violations(sources)
    assert [v.split(":")[0] for v in found] == ["experiments/a.py", "experiments/b.py", "experiments/c.py",
                                                 "experiments/d.py", "experiments/e.py", "wrap.py"], found
    assert _key(found[3]) == "experiments/d.py: _load_data"
