"""The package as pip installs it: the wheel carries the default configuration, the roles presets and everything
`serve` needs, and serves from a virtual environment outside the checkout with the platform roles preset."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from idp_bridge.errors import ConfigError
from idp_bridge.presets import packaged, roles_presets
from idp_bridge.settings import load_settings
from tests.readonly_disk import free_port, stop

ROOT = Path(__file__).resolve().parent.parent
# What the wheel is built from (pyproject.toml names the packages and their data).
SOURCES = ("pyproject.toml", "README.md", "idp_bridge", "providers", "webhooks")
SHIPPED = ("idp_bridge/config/idp-bridge.toml", "idp_bridge/config/roles/default.toml",
           "idp_bridge/config/roles/platform.toml", "idp_bridge/wsgi.py", "idp_bridge/migrations/env.py",
           "idp_bridge/migrations/script.py.mako", "idp_bridge/py.typed")


# Finding the presets (in this process).


def test_a_checkout_reaches_the_shipped_files_through_config() -> None:
    for relative in ("idp-bridge.toml", "roles/default.toml", "roles/platform.toml"):
        shipped = packaged(relative)
        assert shipped is not None
        assert (ROOT / "config" / relative).resolve() == Path(str(shipped)).resolve()
    assert roles_presets() == ["roles/default.toml", "roles/platform.toml"]
    assert packaged("../pyproject.toml") is None and packaged("roles/nothing.toml") is None


def test_without_a_config_file_the_shipped_default_and_a_shipped_roles_preset_are_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={"IDP_BRIDGE_INSTANCE_DIR": str(tmp_path),
                                      "IDP_BRIDGE_ROLES_FILE": "roles/platform.toml"})
    assert settings.role_names() == ["SUPER_ADMIN", "ADMIN", "DEVELOPER", "DEVOPS", "TESTER"]
    assert settings.default_role() == "DEVELOPER"
    assert settings.mail_transport == "file"


def test_a_roles_file_next_to_the_config_file_wins_over_the_shipped_preset_of_that_name(tmp_path: Path) -> None:
    (tmp_path / "roles").mkdir()
    (tmp_path / "roles/platform.toml").write_text('[roles.ONLY]\npermissions = ["users:read"]\n')
    config = tmp_path / "idp-bridge.toml"
    config.write_text('roles_file = "roles/platform.toml"\n')
    settings = load_settings(environ={"IDP_BRIDGE_CONFIG": str(config), "IDP_BRIDGE_INSTANCE_DIR": str(tmp_path)})
    assert settings.role_names() == ["ONLY"]


def test_a_roles_file_found_nowhere_is_an_error_naming_the_shipped_presets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        load_settings(environ={"IDP_BRIDGE_INSTANCE_DIR": str(tmp_path), "IDP_BRIDGE_ROLES_FILE": "roles/plat.toml"})
    assert error.value.setting == "roles_file"
    assert "roles/platform.toml" in error.value.detail and "roles/plat.toml" in error.value.detail


# The built wheel, installed outside the checkout.


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from a copy of the sources (so the checkout gets no build/ or egg-info)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist),
                    str(src)], check=True, capture_output=True, timeout=300)
    (built,) = dist.glob("idp_bridge-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtual environment outside the checkout with the wheel installed.

    The wheel is installed without its dependencies, which come from this test run's environment through a
    .pth file (so the test needs no package index): only the project itself is taken from the wheel.
    """
    home = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True, timeout=120)
    python = home / "bin/python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    # The dependencies' directory may hold an editable install of this checkout: not this wheel.
                    "--ignore-installed", "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    yield home


def outside_env(home: Path) -> dict[str, str]:
    """The environment of a process run from the installed package: nothing points into the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IDP_BRIDGE_", "PROMETHEUS_", "PYTHON", "VIRTUAL_ENV"))}
    return env | {"HOME": str(home), "PATH": f"{home / 'venv/bin'}:{env.get('PATH', '')}"}


@pytest.mark.slow
def test_the_wheel_carries_the_default_config_the_roles_presets_and_the_migrations(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert set(SHIPPED) <= names, sorted(set(SHIPPED) - names)
    assert any(n.startswith("idp_bridge/migrations/versions/") for n in names)
    assert any(n.startswith("idp_bridge/web/pages/templates/") for n in names)
    assert "idp_bridge/web/console/templates/console/members.html" in names
    assert {"idp_bridge/translations/de/LC_MESSAGES/messages.mo", "idp_bridge/web/console/static/timezone.js"} <= names
    assert "idp-bridge = idp_bridge.cli:main" in entry_points


@pytest.mark.slow
def test_the_installed_wheel_serves_outside_the_checkout_with_the_platform_roles_preset(
        venv: Path, tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = outside_env(tmp_path) | {"IDP_BRIDGE_INSTANCE_DIR": str(work / "instance"),
                                   "IDP_BRIDGE_ROLES_FILE": "roles/platform.toml"}
    bin_dir = venv / "bin"

    where = subprocess.run([str(bin_dir / "python"), "-c", "import idp_bridge, providers, webhooks; "
                            "print(idp_bridge.__file__, providers.__file__, webhooks.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(path).is_relative_to(venv) for path in where), where

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(bin_dir / "idp-bridge"), *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done

    cli("org", "create", "acme", "--name", "Acme")
    key = cli("api-key", "create", "--org", "acme", "--permission", "users:invite",
              "--permission", "users:read").stdout.strip()
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(bin_dir / "idp-bridge"), "serve", "--port", str(port), "--no-worker",
                                 "--workers", "1"], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def invite(body: dict[str, str]) -> tuple[int, dict[str, object]]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/orgs/acme/invites", method="POST",
                                         data=json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {key}",
                                                  "Content-Type": "application/json"})
        try:
            with opener.open(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        for _ in range(300):
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        status, body = invite({"identifier": "dev@example.com"})
        assert status == 201, body
        assert body["role"] == "DEVELOPER", "the preset's default role"
        status, body = invite({"identifier": "ops@example.com", "role": "DEVOPS"})
        assert (status, body["role"]) == (201, "DEVOPS")
        status, body = invite({"identifier": "someone@example.com", "role": "MEMBER"})
        assert status == 422 and "SUPER_ADMIN" in json.dumps(body), "the preset replaces the default roles"
        status, body = invite({"identifier": "de@example.com", "locale": "de"})
        assert status == 201 and body["locale"] == "de"
        with opener.open(str(body["link"]), timeout=10) as resp:
            page = resp.read().decode()
        assert '<html lang="de">' in page and "Eingeladen von" in page, "the wheel's compiled German catalog"
    finally:
        stop(proc)
