"""The default configuration and the roles presets, shipped inside the package (idp_bridge/config/).

A checkout reaches the same files through `config/` (links into the package); an installed wheel has only these.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath

DEFAULT_CONFIG_NAME = "idp-bridge.toml"
ROLES_DIR = "roles"


def packaged(relative: str) -> Traversable | None:
    """The shipped file at `relative` (e.g. "roles/platform.toml"), or None when there is no such file."""
    path = PurePosixPath(relative)
    if path.is_absolute() or not path.parts or ".." in path.parts:
        return None
    node = files("idp_bridge") / "config"
    for part in path.parts:
        node = node / part
    return node if node.is_file() else None


def roles_presets() -> list[str]:
    """The shipped roles presets, as paths a `roles_file` setting may name (e.g. "roles/platform.toml")."""
    folder = files("idp_bridge") / "config" / ROLES_DIR
    return sorted(f"{ROLES_DIR}/{entry.name}" for entry in folder.iterdir() if entry.name.endswith(".toml"))
