"""docs/configuration.md is generated from the settings model, and says what the model says."""

from __future__ import annotations

from pathlib import Path

from idp_bridge import config_reference
from idp_bridge.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs/configuration.md"


def test_the_committed_configuration_reference_is_what_the_settings_model_generates() -> None:
    assert REFERENCE.read_text() == config_reference.render(), (
        "docs/configuration.md is out of date: run python -m idp_bridge.config_reference")


def test_every_setting_is_described_and_listed_with_its_environment_variable() -> None:
    text = config_reference.render()
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"
        assert f"| `{name}` | `IDP_BRIDGE_{name.upper()}` |" in text


def test_the_check_mode_fails_on_a_stale_file_and_passes_on_a_fresh_one(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text("# old\n")
    assert config_reference.main(["--check", str(stale)]) == 1
    assert config_reference.main([str(stale)]) == 0
    assert config_reference.main(["--check", str(stale)]) == 0


def test_types_defaults_and_bounds_read_as_the_toml_is_written() -> None:
    text = config_reference.render()
    assert '| `mail_transport` | `IDP_BRIDGE_MAIL_TRANSPORT` | "file" \\| "smtp" | `"file"` |' in text
    assert "| `job_max_attempts` | `IDP_BRIDGE_JOB_MAX_ATTEMPTS` | integer (≥ 1, ≤ 100) | `8` |" in text
    assert "| `access_log` | `IDP_BRIDGE_ACCESS_LOG` | boolean | `true` |" in text
    assert "| `webhook_allow_networks` | `IDP_BRIDGE_WEBHOOK_ALLOW_NETWORKS` | list of text | empty |" in text
