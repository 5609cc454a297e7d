"""Running the `idp-bridge` command in-process against a test's database."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from idp_bridge.cli import cli


def cli_env(tmp_path: Path, database_url: str) -> dict[str, str | None]:
    """IDP_BRIDGE_* variables for a temp instance dir on the test database (and none of the test runner's)."""
    config = tmp_path / "idp-bridge.toml"
    config.write_text('public_url = "http://127.0.0.1:8080"\n')
    return {"IDP_BRIDGE_CONFIG": str(config), "IDP_BRIDGE_INSTANCE_DIR": str(tmp_path / "instance"),
            "IDP_BRIDGE_DATABASE_URL": database_url, "IDP_BRIDGE_SECRET_KEY": "cli-test-secret-key-0123456789",
            "IDP_BRIDGE_TEST_DB": None, "IDP_BRIDGE_TEST_PG_ADMIN": None}


def invoke(env: dict[str, str | None], *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one command."""
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr
