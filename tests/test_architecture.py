"""The layers of the README's "Architecture" section, checked on every module's imports:
a module imports only from layers below its own (a package may import its own modules),
except the imports the README names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "symnoise"

#: (layer, modules): the README's layer table, top to bottom. A name ending in "/" is a
#: package (every module in it).
LAYERS: list[tuple[int, tuple[str, ...]]] = [
    (9, ("__init__",)),  # the package's public names (light: config and noise only)
    (8, ("cli",)),
    (7, ("experiments/",)),
    (6, ("train", "generate", "evaluate/")),
    (5, ("trainer",)),  # the Trainer integration, over the embedding hook
    (4, ("integration", "models", "decoding")),
    (3.5, ("vision",)),  # vision-language structure, below the hook
    (3, ("run", "outputs", "data/")),
    (2, ("config",)),
    (1, ("noise", "pairing")),  # pure tensor math
    (0, ("_io",)),
]
#: Imports the README allows against the rule: (importer, imported) module names.
EXCEPTIONS: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    return path.relative_to(SRC).with_suffix("").as_posix()


def _layer(module: str) -> int:
    for layer, names in LAYERS:
        for name in names:
            if module == name or (name.endswith("/") and module.startswith(name)):
                return layer
    raise AssertionError(f"{module}: not in the README's layer table")


def _package(module: str) -> str:
    return module.rsplit("/", 1)[0] if "/" in module else ""


def _resolve(importer: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """symnoise modules an import statement names (as paths relative to the package)."""
    if isinstance(node, ast.Import):
        return [a.name.removeprefix("symnoise.").replace(".", "/") for a in node.names
                if a.name == "symnoise" or a.name.startswith("symnoise.")]
    if node.level == 0:
        if not (node.module or "").startswith("symnoise"):
            return []
        base = (node.module or "").removeprefix("symnoise").lstrip(".").replace(".", "/")
    else:
        parts = importer.split("/")[:-1]
        parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
        base = "/".join(parts + ([node.module.replace(".", "/")] if node.module else []))
    out = []
    for alias in node.names:  # `from . import x` / `from .pkg import mod` name modules
        candidate = f"{base}/{alias.name}" if base else alias.name
        if (SRC / f"{candidate}.py").is_file() or (SRC / candidate).is_dir():
            out.append(candidate)
        else:
            out.append(base or "__init__")
    return out


def _imports() -> list[tuple[str, str, int]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        importer = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(importer, node):
                    target = target.removesuffix("/__init__")
                    if (SRC / target).is_dir():
                        target += "/__init__"
                    found.append((importer, target, node.lineno))
    return found


def test_every_module_is_in_the_layer_table():
    for path in SRC.rglob("*.py"):
        _layer(_module_name(path))


def test_no_import_goes_up_or_sideways():
    bad: list[str] = []
    for importer, target, line in _imports():
        if importer == target or _package(importer) and _package(importer) == _package(target):
            continue  # a package's own modules
        if target.endswith("__init__") and _package(target) == _package(importer):
            continue
        if _layer(target) < _layer(importer) or (importer, target) in EXCEPTIONS:
            continue
        text = (f"{importer}.py:{line} imports {target} (layer {_layer(target)} >= "
                f"{_layer(importer)})")
        if text not in bad:
            bad.append(text)
    assert not bad, "imports against the layers (README, Architecture):\n" + "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The rule itself: noise.py importing train would be reported."""
    fake = tmp_path / "symnoise"
    fake.mkdir()
    (fake / "noise.py").write_text("from .train import train\n")
    (fake / "train.py").write_text("from .noise import x\n")
    monkeypatch.setattr(__import__(__name__), "SRC", fake)
    with pytest.raises(AssertionError, match=r"noise\.py:1 imports train"):
        test_no_import_goes_up_or_sideways()


def _readme_api_names(package: str) -> set[str]:
    """Names the README's "Python API" section shows from ``package``: its ``from PACKAGE
    import`` lines, and for a subpackage the comment line ``# also: ...`` after them."""
    readme = (SRC.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    lines = section.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(f"from {package} import "):
            code = line.split(" import ", 1)[1].split("#", 1)[0]
            names |= {n.strip() for n in code.split(",") if n.strip()}
            also = lines[i + 2: i + 5] if package != "symnoise" else []
            text = " ".join(x.strip().lstrip("#").strip() for x in also
                            if x.lstrip().startswith("#"))
            if text.startswith("also:"):
                names |= {n.strip() for n in text[5:].split(",") if n.strip()}
    return names


def test_public_surface_is_the_readme_api_and_import_stays_light():
    import subprocess
    import sys

    import symnoise
    import symnoise.data
    import symnoise.integration
    import symnoise.trainer

    assert set(symnoise.__all__) == _readme_api_names("symnoise")
    assert set(symnoise.data.__all__) == _readme_api_names("symnoise.data")
    for name in symnoise.data.__all__:
        assert getattr(symnoise.data, name) is not None, name
    for name in symnoise.__all__:
        assert callable(getattr(symnoise, name)), name  # classes and functions, no module
    # the Trainer classes in one hop: the package takes them from symnoise.trainer itself
    assert symnoise.NoisyTrainer is symnoise.trainer.NoisyTrainer
    assert symnoise.NoisySFTTrainer.__mro__[1] is symnoise.trainer.NoiseTrainerMixin
    assert not hasattr(symnoise.integration, "NoisyTrainer")  # no old re-export
    code = ("import sys, symnoise; assert 'transformers' not in sys.modules; "
            "from symnoise import NoisyTrainer; assert 'transformers' in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
