"""The import rules of jaxcf's layout, checked on the source (``ast``; nothing is computed).

* no module imports an underscore name from another module (``from m import _x``);
* a private module (``_name``) is imported only from inside its own package: another package
  goes through that package's ``__init__`` (``jaxcf._version`` sits in the root package, so every
  module of jaxcf may import it);
* imports sit at module top, except those of :data:`LAZY_IMPORTS`;
* jaxcf imports none of the repository's folders that are not installed (explain, train,
  benchmarks, tests), neither with ``import`` nor with ``importlib.import_module``;
* ``import jaxcf`` loads none of the lazily imported libraries.

The layers between jaxcf's packages are import-linter's contracts (``[tool.importlinter]`` in
pyproject.toml, ``make lint``); :func:`test_import_contracts_hold` runs them here too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxcf"

# The only imports that may stay inside functions, by top-level module, each with its reason.
# ``import jaxcf`` must load none of them (test_import_jaxcf_stays_light).
LAZY_IMPORTS: dict[str, str] = {
    "torch": "optional extra: pip install -e '.[torch]'",
    "dice_ml": "optional extra: pip install -e '.[dice]'",
    "pandas": "comes only with the dice extra",
    "sklearn": "comes only with the dice extra",
    "umap": "umap-learn, an optional library that no extra installs",
    "equinox": "optional extra: pip install -e '.[equinox]' (a user's Equinox model)",
    "tensorflow_datasets": "a dependency, but slow to import; only the TFDS fallback needs it",
}

# Folders of the repository that are not installed with jaxcf.
REPOSITORY_FOLDERS = ("explain", "train", "benchmarks", "tests")

# The one module that may load a repository folder, by name at run time, and why.
CHECKOUT_LOADERS: dict[str, str] = {
    "jaxcf/cli.py": "`jaxcf bench` runs the benchmarks of the checkout it is started in",
}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of this repository."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _checked_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


class _Import:
    """One import statement: where it is, what it imports, whether it sits in a function."""

    def __init__(self, path: Path, node: ast.Import | ast.ImportFrom, in_function: bool):
        self.path, self.node, self.in_function = path, node, in_function
        self.importer = _module_name(path)
        if isinstance(node, ast.ImportFrom):
            module = self._absolute(node)
            # ``from package import submodule`` imports a module: checked as one (rule (b)).
            subs = [a.name for a in node.names if _is_module(f"{module}.{a.name}")]
            self.modules = [module, *(f"{module}.{name}" for name in subs)]
            self.names = [a.name for a in node.names if a.name not in subs]
        else:
            self.modules = [a.name for a in node.names]
            self.names = []

    def _absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = self.importer.split(".")
        if self.path.name != "__init__.py":
            package.pop()
        package = package[: len(package) - (node.level - 1)]
        return ".".join([*package, *([node.module] if node.module else [])])

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.node.lineno}: `{ast.unparse(self.node)}`"


def _imports() -> Iterator[_Import]:
    for path in _checked_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        yield from _walk(path, tree, in_function=False)


def _walk(path: Path, node: ast.AST, in_function: bool) -> Iterator[_Import]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield _Import(path, child, in_function)
        inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        yield from _walk(path, child, inner)


def _report(failures: list[str], rule: str) -> str:
    return f"{rule}:\n  " + "\n  ".join(failures)


def test_no_underscore_name_is_imported_from_another_module():
    failures = [
        f"{imp.where()} imports {name}"
        for imp in _imports()
        for name in imp.names
        if _is_private(name)
    ]
    assert not failures, _report(
        failures,
        "private names imported from another module (give the name a public one in its "
        "module, or move it where both use it)",
    )


def test_private_modules_are_imported_only_inside_their_package():
    failures = []
    for imp in _imports():
        for module in imp.modules:
            parts = module.split(".")
            private = next((i for i, p in enumerate(parts) if _is_private(p)), None)
            if private is None:
                continue
            owner = ".".join(parts[:private])
            if not (owner and (imp.importer == owner or imp.importer.startswith(owner + "."))):
                failures.append(
                    f"{imp.where()} imports {module}, private to {owner or 'its own package'}"
                )
    assert not failures, _report(
        failures,
        "private modules imported from outside their package (import through the package's "
        "__init__, exporting the name there)",
    )


def test_imports_sit_at_module_top():
    failures = [
        f"{imp.where()} sits inside a function"
        for imp in _imports()
        if imp.in_function and not all(m.split(".")[0] in LAZY_IMPORTS for m in imp.modules if m)
    ]
    assert not failures, _report(
        failures,
        "function-level imports (move them to the module top; only LAZY_IMPORTS may stay, "
        "each with its reason)",
    )


def _dynamic_imports(path: Path) -> Iterator[tuple[int, str, str]]:
    """``importlib.import_module("...")`` / ``__import__("...")`` calls: line, call, the name's
    literal start."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called not in ("import_module", "__import__"):
            continue
        arg = node.args[0]
        if isinstance(arg, ast.JoinedStr) and arg.values:
            arg = arg.values[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            yield node.lineno, ast.unparse(node), arg.value


def test_jaxcf_imports_no_repository_folder():
    def forbidden(name: str) -> bool:
        return name.split(".")[0] in REPOSITORY_FOLDERS

    failures = [
        f"{imp.where()} imports a folder of the repository"
        for imp in _imports()
        if any(forbidden(m) for m in imp.modules)
    ]
    for path in _checked_files():
        if str(path.relative_to(ROOT)) in CHECKOUT_LOADERS:
            continue
        failures += [
            f"{path.relative_to(ROOT)}:{line}: `{call}` imports a folder of the repository"
            for line, call, name in _dynamic_imports(path)
            if forbidden(name)
        ]
    assert not failures, _report(
        failures, f"jaxcf imports {', '.join(REPOSITORY_FOLDERS)}, which are not installed"
    )


def test_the_checks_see_the_package_and_its_functions():
    """Guards the checks above against passing vacuously (a moved folder, a bad glob, a walk
    that misses function bodies)."""
    files = _checked_files()
    assert PACKAGE / "__init__.py" in files and len(files) > 50
    source = "import a\nclass C:\n    def m(self):\n        if a:\n            from b import c\n"
    found = list(_walk(PACKAGE / "m.py", ast.parse(source), in_function=False))
    assert [(i.modules, i.in_function) for i in found] == [(["a"], False), (["b"], True)]
    assert found[1].importer == "jaxcf.m" and found[1].where() == "jaxcf/m.py:5: `from b import c`"


def test_import_jaxcf_stays_light():
    code = (
        f"import sys, jaxcf; print(sorted(m for m in {sorted(LAZY_IMPORTS)!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"import jaxcf loads {out.stdout.strip()}"


def test_import_contracts_hold():
    """import-linter's contracts (the layers, the forbidden imports), as ``make lint`` runs
    them; skipped where import-linter (the dev extra) is not installed."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    if not lint_imports.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    out = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
