"""The layers of docs/architecture.md hold: no module imports from a layer above its own (lazy imports included)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "spinelabel"
#: Packages whose modules share the package's layer (``io`` lists its modules one by one).
LAYERED_PACKAGES = ("models", "training", "review")
#: For tests and benchmarks only: not part of the layering, and no library module may import it.
TEST_ONLY = "testing"


def layers(doc: str) -> dict[str, int]:
    """Module name -> layer, from the table rows ``| N. name | `module`, ... | ... |``."""
    out: dict[str, int] = {}
    for line in doc.splitlines():
        row = re.match(r"\| (\d)\. [^|]+\| ([^|]+) \|", line)
        if row:
            out.update({name.rstrip("/"): int(row.group(1)) for name in re.findall(r"`([a-z_]+/?)`", row.group(2))})
    return out


def module_key(parts: tuple[str, ...]) -> str:
    """The name a module has in the table: ``io`` modules by their own name, other packages by the package's."""
    if parts[0] == "io" and len(parts) > 1 and parts[1] != "__init__":
        return parts[1]
    return parts[0]


def imported(source: str, package: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The spinelabel modules (as path parts below the package) that ``source`` imports, anywhere in it."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[: len(package) - (node.level - 1)])
            if node.module:
                found.append(tuple(base + node.module.split(".")))
            else:
                found += [tuple(base + [alias.name]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "spinelabel":
            found += [(alias.name,) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spinelabel."):
            found.append(tuple(node.module.split(".")[1:]))
        elif isinstance(node, ast.Import):
            found += [tuple(a.name.split(".")[1:]) for a in node.names if a.name.startswith("spinelabel.")]
    return [parts for parts in found if parts and parts[0] != "__version__"]


def test_the_import_reader_sees_lazy_and_relative_imports():
    source = ("from ..pipeline import make_labeler\ndef f():\n    from . import nifti\n    import spinelabel.cli\n"
              "    from spinelabel import batch\n")
    assert imported(source, ("io",)) == [("pipeline",), ("io", "nifti"), ("cli",), ("batch",)]
    assert layers("| 3. io | `io/` (`nifti`), `annotations` | x |") == {"io": 3, "nifti": 3, "annotations": 3}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != TEST_ONLY)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_higher_layer(path):
    layer_of = layers((ROOT / "docs" / "architecture.md").read_text())
    rel = path.relative_to(PACKAGE).with_suffix("").parts
    if rel == ("__init__",):
        return
    own = layer_of.get(module_key(rel))
    assert own is not None, f"{'/'.join(rel)} is in no layer of docs/architecture.md"
    upward = []
    for parts in imported(path.read_text(), rel[:-1]):
        key = module_key(parts)
        assert key != TEST_ONLY, f"{'/'.join(rel)} imports {'.'.join(parts)}: testing/ is for tests only"
        assert key in layer_of, f"{'/'.join(rel)} imports {'.'.join(parts)}, which is in no layer"
        if layer_of[key] > own:
            upward.append(f"{'.'.join(parts)} (layer {layer_of[key]})")
    assert not upward, f"{'/'.join(rel)} (layer {own}) imports from above: {', '.join(upward)}"


#: Calls that end the process or write to the terminal: the command layer's business (``cli*.py``), never a
#: library module's (it raises a ``SpinelabelError`` and the command says it in one line). ``exit``, ``quit`` and
#: ``write`` count as attributes of ``sys``, ``os``, ``sys.stdout``/``sys.stderr``; ``exit`` and ``quit`` bare too.
EXITS_AND_PRINTS = {"print", "echo", "secho", "exit", "quit", "_exit", "abort"}
STREAMS = {"stdout", "stderr"}
#: The one exception, with its reason: a batch worker whose parent was killed leaves at once; nothing is left to
#: raise to. (module, enclosing function, call)
MAY_EXIT = {("batch.py", "_exit_with_parent", "_exit")}


def exits_and_prints(source: str) -> list[tuple[str, str]]:
    """(outermost enclosing function or "", name) of each call of :data:`EXITS_AND_PRINTS`, of a write to
    ``sys.stdout``/``sys.stderr``, and of each ``raise SystemExit`` in ``source``."""
    found = []
    for top in ast.parse(source).body:
        where = top.name if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else ""
        for node in ast.walk(top):
            if isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Name) and f.id in EXITS_AND_PRINTS:
                    found.append((where, f.id))
                elif isinstance(f, ast.Attribute) and f.attr in EXITS_AND_PRINTS:
                    found.append((where, f.attr))
                elif (isinstance(f, ast.Attribute) and f.attr == "write" and isinstance(f.value, ast.Attribute)
                      and f.value.attr in STREAMS):
                    found.append((where, f"{f.value.attr}.write"))
            elif isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id == "SystemExit":
                    found.append((where, "SystemExit"))
    return found


def test_the_exit_reader_sees_prints_exits_and_system_exit():
    source = ("import os, sys\nprint(1)\nsys.exit(2)\ndef f():\n    os._exit(1)\n    sys.stderr.write('x')\n"
              "    typer.echo('y')\nraise SystemExit(3)\nraise SystemExit\nx.exit_code()\nquit()\nf.write('z')\n")
    assert sorted(exits_and_prints(source)) == sorted([
        ("", "print"), ("", "exit"), ("f", "_exit"), ("f", "stderr.write"), ("f", "echo"), ("", "SystemExit"),
        ("", "SystemExit"), ("", "quit"),
    ])


@pytest.mark.parametrize("path", [p for p in _modules() if not p.name.startswith("cli")],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_modules_neither_print_nor_exit(path):
    rel = str(path.relative_to(PACKAGE))
    found = [f"{name} in {where or 'the module'}" for where, name in exits_and_prints(path.read_text())
             if (rel, where, name) not in MAY_EXIT]
    assert not found, f"{rel} calls {', '.join(found)}: raise a SpinelabelError and let the command say it"


#: The modules that may load a model themselves: ``pipeline`` (``make_labeler`` maps a region to its model,
#: docs/architecture.md), ``cleaning_evidence`` (a model folder the user names: its region is its own) and
#: ``cli_train`` (every shipped model at once, ``AutoLabeler.load``, to find anchors). Only ``pipeline`` reads
#: ``SHIPPED_MODEL`` for a region's model.
MODEL_LOADERS = {"pipeline.py", "cleaning_evidence.py", "cli_train.py"}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_models_are_loaded_only_where_a_region_meets_its_model(path):
    rel = str(path.relative_to(PACKAGE))
    source = path.read_text()
    loads = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Attribute) and n.attr == "load"
             and isinstance(n.value, ast.Name) and n.value.id in ("Labeler", "AutoLabeler")]
    mapped = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Subscript)
              and isinstance(n.value, ast.Name) and n.value.id == "SHIPPED_MODEL"]
    assert not mapped or rel == "pipeline.py", f"{rel} maps a region to a shipped model: use pipeline.make_labeler"
    assert not loads or rel in MODEL_LOADERS, f"{rel} loads a model itself: use pipeline.make_labeler"
