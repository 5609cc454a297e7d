"""The dependency rules of the tree, read from the source: the core asks providers for capabilities through typed
protocols, never by their type or attributes, and the service layer and domain import no adapter."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "idp_bridge"
# Packages the core may not depend on from its inner layers.
ADAPTERS = ("providers", "webhooks")
INNER = (CORE / "services", CORE / "domain")
BUILT_IN_TYPES = frozenset({"keycloak", "google", "entra", "oidc"})
# Attributes that exist on some provider classes only: reading them means the caller knows the provider's type.
PROVIDER_ONLY = frozenset({"kind", "options", "server_url", "realm", "client_id", "tenant", "guests", "job_kinds",
                           "use_key_cache", "provisions", "oidc"})


def sources(*roots: Path) -> Iterator[Path]:
    for root in roots:
        yield from sorted(p for p in root.rglob("*.py") if "migrations" not in p.parts)


def mentions_provider(node: ast.AST) -> bool:
    """Whether an expression names a provider (a variable, attribute or call with `provider` in its name)."""
    return any((isinstance(n, ast.Name) and "provider" in n.id.lower())
               or (isinstance(n, ast.Attribute) and "provider" in n.attr.lower()) for n in ast.walk(node))


def provider_introspection(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Calls and comparisons that decide by a provider's type or by attributes only some providers have."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr"):
            args = node.args
            attribute = args[1].value if len(args) > 1 and isinstance(args[1], ast.Constant) else None
            if attribute == "kind" or attribute in PROVIDER_ONLY or (args and mentions_provider(args[0])):
                yield node.lineno, f"{node.func.id}(…, {attribute!r})"
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            kinds = [s for s in sides if isinstance(s, ast.Attribute) and s.attr == "kind"]
            names = [s for s in sides if isinstance(s, ast.Constant) and s.value in BUILT_IN_TYPES]
            if kinds and names:
                yield node.lineno, f".kind == {names[0].value!r}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
            if node.args and mentions_provider(node.args[0]):
                yield node.lineno, "isinstance(provider, …)"
        elif isinstance(node, ast.Name) and node.id == "runtime_checkable":
            yield node.lineno, "runtime_checkable"


def adapter_imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ADAPTERS:
                yield node.lineno, name


def violations(paths: Iterator[Path], check: Callable[[ast.AST], Iterator[tuple[int, str]]]) -> list[str]:
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, what in check(tree):
            found.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    return found


def test_the_core_and_the_inbound_webhooks_never_inspect_a_providers_type_or_private_attributes() -> None:
    assert violations(sources(CORE, ROOT / "webhooks"), provider_introspection) == []


def test_the_service_layer_and_the_domain_import_no_provider_or_webhook_module() -> None:
    assert violations(sources(*INNER), adapter_imports) == []


@pytest.mark.parametrize(("source", "expected"), [
    ('if getattr(provider, "kind", "") == "keycloak": pass', 'getattr(…, \'kind\')'),
    ('share = getattr(p, "use_key_cache", None)', "getattr(…, 'use_key_cache')"),
    ('if hasattr(provider, "guests"): pass', "hasattr(…, 'guests')"),
    ('[p for p in ps if p.kind == "google"]', ".kind == 'google'"),
    ("ok = isinstance(provider, Provisioner)", "isinstance(provider, …)"),
    ("@runtime_checkable\nclass P(Protocol): ...", "runtime_checkable"),
])
def test_the_introspection_check_catches_each_form_it_forbids(source: str, expected: str) -> None:
    assert [what for _, what in provider_introspection(ast.parse(source))] == [expected]


def test_the_import_check_catches_adapter_imports_in_every_form() -> None:
    tree = ast.parse("import providers.jwks\nfrom webhooks.inbound import keycloak\nfrom idp_bridge import audit\n")
    assert [name for _, name in adapter_imports(tree)] == ["providers.jwks", "webhooks.inbound"]
