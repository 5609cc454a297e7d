"""Each built-in provider lists every key of its [providers.NAME] table; any other key is an error that names it
and suggests the key meant."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from idp_bridge.bootstrap import build
from idp_bridge.errors import ConfigError
from idp_bridge.plugins import build_providers, provider_classes
from idp_bridge.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
# Helpers of providers/settings.py that take a key as an argument after the options (and the provider name).
KEY_HELPERS = {"require", "require_url", "number", "flag", "text"}


def _is_options(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "options") or (
        isinstance(node, ast.Attribute) and node.attr == "options")


def keys_read(tree: ast.AST, helper_keys: dict[str, set[str]]) -> set[str]:
    """Every literal key read from a provider's options in `tree`, through options.get or a settings helper."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "get" and _is_options(func.value) and node.args:
            if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
        elif isinstance(func, ast.Name) and node.args and _is_options(node.args[0]):
            if func.id in KEY_HELPERS:
                found |= {a.value for a in node.args[1:] if isinstance(a, ast.Constant) and isinstance(a.value, str)}
            found |= helper_keys.get(func.id, set())
    return found


def helper_keys() -> dict[str, set[str]]:
    """The keys each function of providers/settings.py reads on its own (pacing_from, ca_bundle)."""
    tree = ast.parse((ROOT / "providers/settings.py").read_text())
    return {fn.name: keys_read(fn, {}) for fn in tree.body if isinstance(fn, ast.FunctionDef)}


@pytest.mark.parametrize("kind", ["keycloak", "google", "entra", "oidc"])
def test_a_built_in_provider_lists_every_key_its_code_reads(kind: str) -> None:
    cls = provider_classes()[kind]
    helpers = helper_keys()
    read: set[str] = set()
    for klass in inspect.getmro(cls):  # type: ignore[arg-type]
        if klass.__module__.startswith("providers."):
            read |= keys_read(ast.parse(Path(inspect.getfile(klass)).read_text()), helpers)
    assert read, "the scan found no key read at all"
    assert read | {"type"} == cls.OPTIONS  # type: ignore[attr-defined]


@pytest.mark.parametrize(("options", "setting", "suggestion"), [
    ({"type": "google", "client_id": "x", "client_secret": "y", "lable": "Work"}, "providers.corp.lable",
     "did you mean providers.corp.label?"),
    ({"type": "oidc", "issuer": "https://idp.test", "client_id": "x", "client_secret": "y", "isuer": "z"},
     "providers.corp.isuer", "did you mean providers.corp.issuer?"),
    ({"type": "keycloak", "server_url": "https://kc.test", "realm": "a", "client_id": "x", "client_secret": "y",
      "webhook_secert": "s"}, "providers.corp.webhook_secert", "did you mean providers.corp.webhook_secret?"),
])
def test_an_unknown_provider_key_is_an_error_that_suggests_the_key_meant(
        options: dict[str, str], setting: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_providers({"corp": options}, public_url="https://join.test")
    assert caught.value.setting == setting
    assert suggestion in caught.value.detail


def test_a_misspelt_provider_key_in_the_toml_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cret")
    config = tmp_path / "idp-bridge.toml"
    config.write_text('[providers.corp]\ntype = "oidc"\nissuer = "https://idp.test"\nclient_id = "x"\n'
                      f'client_secret = "y"\nclient_secert_file = "{tmp_path / "secret"}"\n')
    environ = {"IDP_BRIDGE_CONFIG": str(config), "IDP_BRIDGE_INSTANCE_DIR": str(tmp_path / "instance")}
    with pytest.raises(ConfigError) as caught:
        build(load_settings(environ=environ))
    assert caught.value.setting == "providers.corp.client_secert"
    assert "did you mean providers.corp.client_secret?" in caught.value.detail


def test_an_unreadable_secret_file_of_a_provider_names_its_full_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"IDP_BRIDGE_PROVIDERS__CORP__CLIENT_SECRET_FILE": str(tmp_path / "missing")})
    assert caught.value.setting == "providers.corp.client_secret_file"


def test_a_third_party_type_without_a_key_list_takes_any_key() -> None:
    class Plugin:
        @classmethod
        def from_config(cls, name: str, options: object, **_: object) -> object:
            return (name, options)

    built = build_providers({"x": {"type": "mine", "anything": "1"}}, public_url="https://join.test",
                            classes={"mine": Plugin()})  # type: ignore[dict-item]
    assert built["x"] == ("x", {"type": "mine", "anything": "1"})  # type: ignore[comparison-overlap]
