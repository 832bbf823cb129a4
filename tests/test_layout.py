"""The package layout the README and DEVELOPERS.md promise: a stage imports only earlier stages, ``bench/`` and
``export/`` never import ``train/``, and no ``_private`` name crosses a package boundary."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mobile_sr"
STAGES = ["core", "data", "metrics", "models", "inference", "evaluation", "upscale", "downscale", "train", "export",
          "bench", "search", "bundle", "cli", "__main__", "__init__"]


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _stage(parts: tuple[str, ...]) -> str:
    """The stage of a module path inside the package (``("export", "tflite")`` -> ``export``)."""
    return parts[0].removesuffix(".py") if parts else "__init__"


def _imports(path: Path) -> list[tuple[tuple[str, ...], list[str]]]:
    """(absolute module parts inside mobile_sr, imported names) of every import in ``path``, lazy ones too."""
    rel = path.relative_to(PACKAGE).with_suffix("").parts
    package = rel[:-1] if rel[-1] != "__init__" else rel[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = base + tuple(node.module.split(".")) if node.module else base
            elif node.module and node.module.startswith("mobile_sr"):
                target = tuple(node.module.split(".")[1:])
            else:
                continue
            out.append((target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("mobile_sr."):
                    out.append((tuple(a.name.split(".")[1:]), []))
    return out


def test_stages_import_only_earlier_stages():
    wrong = []
    for path in _modules():
        own = _stage(path.relative_to(PACKAGE).parts)
        for target, names in _imports(path):
            # `from . import x` in a top-level module names the module x itself
            stage = _stage(target) if target else _stage((names[0],))
            if STAGES.index(stage) > STAGES.index(own):
                wrong.append(f"{path.relative_to(PACKAGE)} ({own}) imports {'.'.join(target) or names} ({stage})")
    assert not wrong, "\n".join(wrong)


def test_bench_and_export_never_import_train():
    for path in _modules():
        if _stage(path.relative_to(PACKAGE).parts) in ("bench", "export"):
            assert all(t[:1] != ("train",) for t, _ in _imports(path)), path


def test_no_private_name_crosses_a_package():
    wrong = []
    for path in _modules():
        package = path.relative_to(PACKAGE).parts[:-1]
        for target, names in _imports(path):
            source_package = target if (PACKAGE.joinpath(*target) / "__init__.py").exists() else target[:-1]
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and tuple(source_package) != tuple(package):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {private} from {'.'.join(target)}")
    assert not wrong, "\n".join(wrong)


def test_the_layout_checks_can_fail(tmp_path, monkeypatch):
    """A module of an early stage that imports a later one is caught (the checks above are not vacuous)."""
    fake = tmp_path / "mobile_sr"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / "bad.py").write_text("from ..train.trainer import _private\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    for check in (test_stages_import_only_earlier_stages, test_no_private_name_crosses_a_package):
        try:
            check()
        except AssertionError as exc:
            assert "data/bad.py" in str(exc)
        else:
            raise AssertionError(f"{check.__name__} missed a bad import")
