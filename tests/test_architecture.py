"""The dependency rules of ARCHITECTURE.md, checked on the source: which layer may import which."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("idp_bridge", "providers", "webhooks")
# The core layers: they know nothing of HTTP, of the concrete adapters, or of the faces.
CORE = ("idp_bridge.domain", "idp_bridge.services")
# What the core may not reach, directly or through any module of ours it imports.
FORBIDDEN_IN_CORE = ("flask", "werkzeug", "gunicorn", "providers", "webhooks", "idp_bridge.web",
                     "idp_bridge.bootstrap", "idp_bridge.plugins", "idp_bridge.cli")
ADAPTERS = ("providers", "webhooks")
# The composition root: the app/worker wiring and the plugin loader that builds providers.
COMPOSITION_ROOT = ("idp_bridge.bootstrap", "idp_bridge.plugins")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the three packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def imports_of(name: str) -> set[str]:
    """Every module `name` imports anywhere in its body (functions included), as dotted names."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            # `from idp_bridge import audit` imports the submodule idp_bridge.audit.
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules())
    return found


def ours(name: str) -> bool:
    return name in modules()


def reachable(start: str) -> dict[str, list[str]]:
    """Each module reachable from `start` through our own imports, with the import chain that reaches it."""
    chains: dict[str, list[str]] = {start: [start]}
    todo = [start]
    while todo:
        current = todo.pop()
        for imported in sorted(imports_of(current)):
            # Importing a.b.c runs a and a.b first.
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):
                step = ".".join(parts[:i])
                if step not in chains:
                    chains[step] = [*chains[current], step]
                    if ours(step):
                        todo.append(step)
    return chains


def core_modules() -> Iterator[str]:
    return (name for name in sorted(modules()) if any(under(name, layer) for layer in CORE))


def test_the_core_reaches_neither_the_web_framework_nor_the_adapters_nor_the_faces() -> None:
    assert list(core_modules()), "no core module found: the layer list is stale"
    broken = []
    for name in core_modules():
        for reached, chain in reachable(name).items():
            if any(under(reached, forbidden) for forbidden in FORBIDDEN_IN_CORE):
                broken.append(" -> ".join(chain))
    assert broken == []


# The domain is plain values and rules: of ours it reaches only itself and the error classes, and no SQL.
DOMAIN = "idp_bridge.domain"
DOMAIN_MAY_REACH = (DOMAIN, "idp_bridge.errors")


def test_the_domain_reaches_nothing_of_ours_but_itself_and_the_errors_and_no_sql() -> None:
    names = [name for name in modules() if under(name, DOMAIN)]
    assert names, "no domain module found"
    broken = [" -> ".join(chain) for name in names for reached, chain in reachable(name).items()
              if (ours(reached) and reached != "idp_bridge"
                  and not any(under(reached, allowed) for allowed in DOMAIN_MAY_REACH))
              or under(reached, "sqlalchemy")]
    assert broken == []


def test_only_the_composition_root_imports_the_adapters() -> None:
    offenders = sorted(
        f"{name} imports {imported}"
        for name in modules() if under(name, "idp_bridge") and name not in COMPOSITION_ROOT
        for imported in imports_of(name) if any(under(imported, adapter) for adapter in ADAPTERS)
    )
    assert offenders == []


def test_the_walk_sees_imports_made_inside_functions_and_from_packages() -> None:
    # The composition root imports the inbound routes inside create_app, and `from idp_bridge import audit`
    # is an import of idp_bridge.audit: a walker that missed either would pass everything.
    assert "webhooks.inbound.routes" in imports_of("idp_bridge.bootstrap")
    assert "idp_bridge.audit" in imports_of("idp_bridge.services.orgs")
    assert any(chain[-1] == "flask" for chain in reachable("idp_bridge.bootstrap").values())


@pytest.mark.parametrize("package", ["idp_bridge", *CORE])
def test_importing_the_core_loads_no_web_framework(package: str) -> None:
    names = [name for name in sorted(modules()) if under(name, package) and (package != "idp_bridge"
                                                                            or name == "idp_bridge")]
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug', 'providers', "
            "'webhooks')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# The services name the narrow ports they use (services/ports.py), never the composition root's Bridge.
BRIDGE = "idp_bridge.bridge"


def test_no_service_or_domain_module_imports_the_bridge() -> None:
    scanned = sorted((ROOT / "idp_bridge" / "services").glob("*.py")) + sorted(
        (ROOT / "idp_bridge" / "domain").glob("*.py"))
    assert len(scanned) > 5, "no service or domain module found"
    offenders = sorted(module_name(path) for path in scanned
                       if any(under(imported, BRIDGE) for imported in imports_of(module_name(path))))
    assert offenders == []


def test_no_service_or_domain_module_reaches_the_bridge_through_another_module() -> None:
    broken = [" -> ".join(chain) for name in core_modules() for reached, chain in reachable(name).items()
              if under(reached, BRIDGE)]
    assert broken == []


def test_the_bridge_scan_sees_an_import_of_the_bridge() -> None:
    # The jobs layer still hands the whole Bridge to its handlers: the scan must see that import.
    assert BRIDGE in imports_of("idp_bridge.worker")
