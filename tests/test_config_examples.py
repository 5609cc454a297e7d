"""config/examples/: one configuration file per built-in provider type, each loaded and built as `serve` would."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from idp_bridge.errors import ConfigError
from idp_bridge.plugins import build_providers, provider_classes
from idp_bridge.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "config" / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.toml"))


def secret_variable(table: str) -> str:
    return f"IDP_BRIDGE_PROVIDERS__{table.upper()}__CLIENT_SECRET"


def test_there_is_one_example_per_built_in_provider_type() -> None:
    assert {path.stem for path in EXAMPLE_FILES} == set(provider_classes())


def test_the_default_configuration_points_at_the_examples() -> None:
    assert "see config/examples/" in (ROOT / "config" / "idp-bridge.toml").read_text()


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_an_example_loads_and_builds_its_provider_with_the_secret_its_header_names(
        path: Path, tmp_path: Path) -> None:
    (table,) = tomllib.loads(path.read_text())["providers"]
    variable = secret_variable(table)
    assert variable in path.read_text(), f"{path.name} should say where the client secret comes from"
    environ = {"IDP_BRIDGE_CONFIG": str(path), "IDP_BRIDGE_INSTANCE_DIR": str(tmp_path)}

    settings = load_settings(environ=environ | {variable: "s3cret"})
    providers = build_providers(settings.providers, public_url=settings.public_url)

    assert list(providers) == [table]
    assert settings.providers[table]["type"] == path.stem
    with pytest.raises(ConfigError) as missing:
        unset = load_settings(environ=environ)
        build_providers(unset.providers, public_url=unset.public_url)
    assert variable in str(missing.value)
