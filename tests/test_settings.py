"""Settings: TOML, environment overrides, role presets and configuration errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from idp_bridge.bootstrap import build
from idp_bridge.errors import ConfigError
from idp_bridge.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "idp-bridge.toml"
    path.write_text(text)
    return {"IDP_BRIDGE_CONFIG": str(path)}


def test_toml_values_are_read_and_environment_variables_override_them(tmp_path: Path) -> None:
    env = write_config(tmp_path, """
public_url = "https://join.example.com"
job_max_attempts = 5
[providers.corp]
type = "keycloak"
server_url = "https://sso.example.com"
realm = "acme"
client_id = "idp-bridge"
client_secret = "from-toml"
""")
    env |= {"IDP_BRIDGE_PROVIDERS__CORP__CLIENT_SECRET": "from-env", "IDP_BRIDGE_JOB_MAX_ATTEMPTS": "3",
            "IDP_BRIDGE_SUPPORT_CONTACT": "help@example.com"}
    settings = load_settings(environ=env)
    assert settings.public_url == "https://join.example.com"
    assert settings.job_max_attempts == 3
    assert settings.support_contact == "help@example.com"
    assert settings.providers["corp"]["client_secret"] == "from-env"
    assert settings.providers["corp"]["realm"] == "acme"


def test_the_shipped_default_config_loads_with_the_default_roles(tmp_path: Path) -> None:
    settings = load_settings(overrides={"instance_dir": str(tmp_path)},
                             environ={"IDP_BRIDGE_CONFIG": str(ROOT / "config/idp-bridge.toml")})
    assert settings.role_names() == ["OWNER", "ADMIN", "MEMBER"]
    assert settings.default_role() == "MEMBER"
    assert settings.mail_transport == "file"
    assert settings.database_url.startswith("sqlite:///") and settings.mail_dir == tmp_path.resolve() / "mail"


def test_the_platform_roles_preset_makes_developer_the_default(tmp_path: Path) -> None:
    env = write_config(tmp_path, f'roles_file = "{ROOT / "config/roles/platform.toml"}"\n')
    settings = load_settings(environ=env)
    assert settings.role_names() == ["SUPER_ADMIN", "ADMIN", "DEVELOPER", "DEVOPS", "TESTER"]
    assert settings.default_role() == "DEVELOPER"
    assert settings.roles["SUPER_ADMIN"].owner


def test_a_relative_roles_file_is_found_next_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "roles").mkdir()
    (tmp_path / "roles/mine.toml").write_text((ROOT / "config/roles/platform.toml").read_text())
    settings = load_settings(environ=write_config(tmp_path, 'roles_file = "roles/mine.toml"\n'))
    assert settings.default_role() == "DEVELOPER"


@pytest.mark.parametrize(("toml", "env", "setting"), [
    ('[providers.corp]\ntype = "okta"\nclient_id = "x"\nclient_secret = "y"\n', {}, "providers.corp.type"),
    ('[providers.corp]\ntype = "google"\nclient_id = "x"\n', {}, "providers.corp.client_secret"),
    ('[providers.ms]\ntype = "entra"\nclient_id = "x"\nclient_secret = "y"\ntenant = "nope"\n', {},
     "providers.ms.tenant"),
    ('public_url = "join.example.com"\n', {}, "public_url"),
    ("", {"IDP_BRIDGE_JOB_MAX_ATTEMPTS": "0"}, "job_max_attempts"),
    ("", {"IDP_BRIDGE_MAIL_TRANSPORT": "pigeon"}, "mail_transport"),
    ('roles_file = "missing.toml"\n', {}, "roles_file"),
    ('[roles.A]\ndefault = true\npermissions = ["users:fly"]\n', {}, "roles.A.permissions"),
    ('[roles.A]\ndefault = true\n[roles.B]\ndefault = true\n', {}, "roles"),
    ("not toml at all [", {}, "IDP_BRIDGE_CONFIG"),
])
def test_configuration_errors_name_the_setting(tmp_path: Path, toml: str, env: dict[str, str],
                                               setting: str) -> None:
    environ = write_config(tmp_path, toml) | env | {"IDP_BRIDGE_INSTANCE_DIR": str(tmp_path / "instance")}
    with pytest.raises(ConfigError) as caught:
        build(load_settings(environ=environ))
    assert caught.value.setting == setting
    assert setting in caught.value.detail


def test_a_missing_config_file_named_explicitly_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(environ={"IDP_BRIDGE_CONFIG": str(tmp_path / "absent.toml")})


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cret\n")
    env = write_config(tmp_path, f'[providers.g]\ntype = "google"\nclient_id = "x"\n'
                                 f'client_secret_file = "{tmp_path / "secret"}"\n')
    assert load_settings(environ=env).providers["g"]["client_secret"] == "s3cret"
