"""A directory that stands for a fresh checkout after `make install`: this checkout's Makefile, pyproject.toml,
alembic.ini and source directories (linked), and a `.venv` made of the running interpreter's (its bin/, lib/ and
pyvenv.cfg linked, so `.venv/bin/python` is that environment; its own `.installed` stamp is newer than
pyproject.toml, so `make` installs nothing). `make run`, `make demo`, `make lint`, `make test-sqlite`, the README's
`.venv/bin/idp-bridge` and `.venv/bin/python -m pytest` run there as written, and whatever they write (instance/,
demo-instance/, tool caches) stays in the temporary directory."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINKED = ("Makefile", "pyproject.toml", "alembic.ini", "config",
          "idp_bridge", "providers", "webhooks", "tests", "bench", "scripts")


def checkout_dir(parent: Path) -> Path:
    """Make the directory under `parent` and return it."""
    work = parent / "checkout"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    venv = work / ".venv"
    venv.mkdir()
    for entry in Path(sys.prefix).iterdir():
        if entry.name != ".installed":
            (venv / entry.name).symlink_to(entry)
    (venv / ".installed").touch()
    return work


def child_env(**extra: str) -> dict[str, str]:
    """The environment for commands run there: this checkout's code first on the path, and none of the test
    runner's IDP_BRIDGE_* settings nor an outer `make`'s variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IDP_BRIDGE_", "PROMETHEUS_")) and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PYTHONPATH"] = str(ROOT)
    return env | extra


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that were free a moment ago."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def port_open(port: int) -> bool:
    """Whether something accepts connections on the loopback port."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
