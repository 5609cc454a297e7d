"""Provider configuration mistakes stop `serve` at start, naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def serve_with(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDP_BRIDGE_")}
    clean.update({"IDP_BRIDGE_INSTANCE_DIR": str(tmp_path), "IDP_BRIDGE_SECRET_KEY": "x" * 40,
                  "IDP_BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", **env})
    return subprocess.run([sys.executable, "-m", "idp_bridge.cli", "serve", "--port", "1", "--no-worker"],
                          env=clean, capture_output=True, text=True, timeout=60)


KC = {"IDP_BRIDGE_PROVIDERS__KC__TYPE": "keycloak", "IDP_BRIDGE_PROVIDERS__KC__SERVER_URL": "https://sso.test",
      "IDP_BRIDGE_PROVIDERS__KC__REALM": "acme", "IDP_BRIDGE_PROVIDERS__KC__CLIENT_ID": "idp-bridge",
      "IDP_BRIDGE_PROVIDERS__KC__CLIENT_SECRET": "s3cret"}


@pytest.mark.parametrize(("change", "setting"), [
    ({"IDP_BRIDGE_PROVIDERS__KC__CLIENT_SECRET": ""}, "providers.kc.client_secret"),
    ({"IDP_BRIDGE_PROVIDERS__KC__SERVER_URL": "sso.test"}, "providers.kc.server_url"),
    ({"IDP_BRIDGE_PROVIDERS__KC__TYPE": "keycloack"}, "providers.kc.type"),
    ({"IDP_BRIDGE_PROVIDERS__KC__RATE_LIMIT_PER_SECOND": "fast"}, "providers.kc.rate_limit_per_second"),
], ids=["missing-secret", "bad-url", "unknown-type", "bad-rate"])
def test_serve_stops_at_start_naming_the_bad_setting(tmp_path: Path, change: dict[str, str], setting: str) -> None:
    result = serve_with(tmp_path, **{**KC, **change})
    assert result.returncode == 2
    assert setting in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_stops_when_b2b_is_asked_of_a_multi_tenant_entra_provider(tmp_path: Path) -> None:
    result = serve_with(tmp_path, IDP_BRIDGE_PROVIDERS__MS__TYPE="entra", IDP_BRIDGE_PROVIDERS__MS__CLIENT_ID="a",
                        IDP_BRIDGE_PROVIDERS__MS__CLIENT_SECRET="b", IDP_BRIDGE_PROVIDERS__MS__TENANT="common",
                        IDP_BRIDGE_PROVIDERS__MS__B2B_INVITE="true")
    assert result.returncode == 2
    assert "providers.ms.tenant" in result.stderr and "GUID" in result.stderr
