"""A directory that stands for a fresh checkout after `make install`: this checkout's Makefile, pyproject.toml,
config/ and scripts/, and a `.venv` whose bin/ is the running interpreter's (its `.installed` stamp is newer than
pyproject.toml, so `make` installs nothing). `make run`, `make demo` and the README's `.venv/bin/idp-bridge` run
there as written, and whatever they write (instance/, demo-instance/) stays in the temporary directory."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINKED = ("Makefile", "pyproject.toml", "config", "scripts")


def checkout_dir(parent: Path) -> Path:
    """Make the directory under `parent` and return it."""
    work = parent / "checkout"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    venv = work / ".venv"
    venv.mkdir()
    (venv / "bin").symlink_to(Path(sys.prefix) / "bin")
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
