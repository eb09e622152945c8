"""The layering of docs/architecture.md, enforced by reading every module's imports."""

from __future__ import annotations

import ast
import pathlib

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "quickike"

#: package -> quickike packages it must not import (directly)
FORBIDDEN = {
    "wire": {"crypto", "engine", "qcd", "dataplane", "control", "daemon", "sim", "lab", "tools", "cli"},
    "crypto": {"engine", "qcd", "dataplane", "control", "daemon", "sim", "lab", "tools", "cli"},
    "engine": {"qcd", "dataplane", "control", "daemon", "sim", "lab", "tools", "cli"},
    "qcd": {"dataplane", "control", "daemon", "sim", "lab", "tools", "cli"},
    "dataplane": {"qcd", "control", "daemon", "sim", "tools", "cli"},
    "control": {"daemon", "sim", "lab", "tools", "cli"},
}
#: stdlib modules the sans-I/O layers must not use
IO_MODULES = {"socket", "asyncio", "threading", "selectors", "time", "subprocess"}


def imports_of(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    pkg = path.relative_to(SRC).parts
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(("quickike", *pkg[:-1]))
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.add(mod)
    return out


def test_layers_import_only_downwards():
    problems = []
    for layer, forbidden in FORBIDDEN.items():
        for path in (SRC / layer).rglob("*.py"):
            for mod in imports_of(path):
                parts = mod.split(".")
                if parts[0] == "quickike" and len(parts) > 1 and parts[1] in forbidden:
                    problems.append(f"{path.relative_to(SRC)} imports {mod}")
                if layer in ("wire", "crypto", "engine") and parts[0] in IO_MODULES:
                    problems.append(f"{path.relative_to(SRC)} imports {mod} (I/O or clock)")
    assert not problems, "\n".join(problems)
