"""Settings: TOML, environment overrides, role presets and configuration errors that name the setting."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from idp_bridge.bootstrap import build
from idp_bridge.errors import ConfigError
from idp_bridge.plugins import build_providers
from idp_bridge.settings import load_settings, unknown_environment, warn_unknown_environment

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


def test_a_providers_ca_file_is_a_path_not_a_secret_read_into_ca(tmp_path: Path) -> None:
    ca = tmp_path / "private-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = write_config(tmp_path, f"""
[providers.corp]
type = "keycloak"
server_url = "https://sso.example.com"
realm = "acme"
client_id = "idp-bridge"
client_secret = "s"
ca_file = "{ca}"
[providers.entra]
type = "entra"
client_id = "c"
client_secret = "s"
""")
    env["IDP_BRIDGE_PROVIDERS__ENTRA__CA_FILE"] = str(ca)
    settings = load_settings(overrides={"instance_dir": str(tmp_path)}, environ=env)
    assert settings.providers["corp"]["ca_file"] == str(ca) and "ca" not in settings.providers["corp"]
    assert settings.providers["entra"]["ca_file"] == str(ca) and "ca" not in settings.providers["entra"]
    # Both take the key: the deployment builds.
    assert set(build_providers(settings.providers, public_url="https://join.example.com")) == {"corp", "entra"}


def test_environment_variables_that_name_no_setting_are_warned_about_once_and_never_fatal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # What Kubernetes injects for a Service named idp-bridge, beside a real setting.
    env = {"IDP_BRIDGE_PORT": "tcp://10.0.0.1:8080", "IDP_BRIDGE_PORT_8080_TCP_ADDR": "10.0.0.1",
           "IDP_BRIDGE_SERVICE_HOST": "10.0.0.1", "IDP_BRIDGE_SUPPORT_CONTACT": "help@example.com",
           "IDP_BRIDGE_PROVIDERS__CORP__CLIENT_SECRET": "s"} | write_config(tmp_path, "")

    settings = load_settings(environ=env)
    assert settings.support_contact == "help@example.com"
    assert unknown_environment(env) == ["IDP_BRIDGE_PORT", "IDP_BRIDGE_PORT_8080_TCP_ADDR", "IDP_BRIDGE_SERVICE_HOST"]

    with caplog.at_level(logging.WARNING, logger="idp_bridge.settings"):
        warn_unknown_environment(env)
        warn_unknown_environment(env)
    [line] = [r.getMessage() for r in caplog.records]
    assert "IDP_BRIDGE_PORT, IDP_BRIDGE_PORT_8080_TCP_ADDR, IDP_BRIDGE_SERVICE_HOST" in line
    assert "tcp://" not in line and "10.0.0.1" not in line


def test_a_nested_variable_under_a_plain_setting_is_unknown() -> None:
    assert unknown_environment({"IDP_BRIDGE_PUBLIC_URL__X": "1", "IDP_BRIDGE_ROLES__A__DEFAULT": "true",
                                "IDP_BRIDGE_SECRET_KEY_FILE": "/run/secrets/k"}) == ["IDP_BRIDGE_PUBLIC_URL__X"]


@pytest.mark.parametrize(("toml", "setting", "suggestion"), [
    ('publik_url = "https://join.example.com"\n', "publik_url", "did you mean public_url?"),
    ("job_max_atempts = 3\n", "job_max_atempts", "did you mean job_max_attempts?"),
    ('[roles.A]\ndefault = true\npermisions = ["users:read"]\n', "roles.A.permisions",
     "did you mean roles.A.permissions?"),
])
def test_an_unknown_key_in_the_toml_is_an_error_that_suggests_the_setting_meant(
        tmp_path: Path, toml: str, setting: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=write_config(tmp_path, toml))
    assert caught.value.setting == setting
    assert suggestion in caught.value.detail


def test_an_unknown_key_like_no_setting_gets_no_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=write_config(tmp_path, "zzzz = 1\n"))
    assert caught.value.setting == "zzzz" and "did you mean" not in caught.value.detail


def test_a_file_variable_supplies_a_secret_and_beats_the_toml(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-the-file\n")
    (tmp_path / "smtp").write_text("relay-password")
    env = write_config(tmp_path, 'secret_key = "from-toml"\n') | {
        "IDP_BRIDGE_SECRET_KEY_FILE": str(tmp_path / "key"), "IDP_BRIDGE_SMTP_PASSWORD_FILE": str(tmp_path / "smtp")}
    settings = load_settings(environ=env)
    assert settings.secret_key == "from-the-file"
    assert settings.smtp_password == "relay-password"


def test_a_secret_file_that_cannot_be_read_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"IDP_BRIDGE_SECRET_KEY_FILE": str(tmp_path / "missing")})
    assert caught.value.setting == "secret_key_file" and "cannot read" in caught.value.detail


def test_environment_values_keep_their_type_lists_in_toml_or_json_and_secrets_as_text() -> None:
    settings = load_settings(environ={
        "IDP_BRIDGE_WEBHOOK_ALLOW_NETWORKS": "['127.0.0.0/8']", "IDP_BRIDGE_DNS_NAMESERVERS": '["127.0.0.1:5353"]',
        "IDP_BRIDGE_ACCESS_LOG": "false", "IDP_BRIDGE_SECRET_KEY": "12345",
        "IDP_BRIDGE_PROVIDERS__CORP__CLIENT_SECRET": "0123", "IDP_BRIDGE_LOG_FORMAT": "json"})
    assert settings.webhook_allow_networks == ["127.0.0.0/8"]
    assert settings.dns_nameservers == ["127.0.0.1:5353"]
    assert settings.access_log is False and settings.log_format == "json"
    assert settings.secret_key == "12345" and settings.providers["corp"]["client_secret"] == "0123"


def test_a_list_variable_that_is_neither_toml_nor_json_names_the_setting() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"IDP_BRIDGE_WEBHOOK_ALLOW_NETWORKS": "[127.0.0.0/8"})
    assert caught.value.setting == "webhook_allow_networks"


def test_only_settings_given_somewhere_count_as_set(tmp_path: Path) -> None:
    settings = load_settings(environ=write_config(tmp_path, 'mail_transport = "file"\n'))
    assert "mail_transport" in settings.model_fields_set
    assert "public_url" not in settings.model_fields_set
    assert "public_url" in load_settings(environ={"IDP_BRIDGE_PUBLIC_URL": "https://j.example"}).model_fields_set
