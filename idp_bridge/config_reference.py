"""The configuration reference, docs/configuration.md, generated from the Settings model so it cannot drift.

    python -m idp_bridge.config_reference            write docs/configuration.md
    python -m idp_bridge.config_reference --check    exit 1 if the file differs from what the model says
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from idp_bridge.settings import DEFAULT_CONFIG, ENV_PREFIX, SECRET_SUFFIX, Settings

DEFAULT_OUTPUT = Path("docs/configuration.md")

INTRO = f"""\
# Configuration reference

Generated from the settings model (`idp_bridge/settings.py`) by `python -m idp_bridge.config_reference`;
a test fails when this file and the model disagree.

Where each value comes from, the first that has it winning:

1. `{ENV_PREFIX}<SETTING>` environment variables (upper case; nested tables with `__`, e.g.
   `{ENV_PREFIX}PROVIDERS__CORP__CLIENT_SECRET`, `{ENV_PREFIX}ROLES__ADMIN__DEFAULT=true`). Lists and tables
   may be written in TOML or JSON: `{ENV_PREFIX}WEBHOOK_ALLOW_NETWORKS='["127.0.0.0/8"]'`.
2. The TOML file named by `{ENV_PREFIX}CONFIG` (default `{DEFAULT_CONFIG}`, read when present; a file named
   explicitly must exist).
3. The defaults below.

Secrets belong in the environment or in files: any setting `x` (and any provider key) may be given as
`x{SECRET_SUFFIX} = "/path"` in the TOML or `{ENV_PREFIX}X{SECRET_SUFFIX.upper()}=/path` in the environment, e.g.
`{ENV_PREFIX}SECRET_KEY_FILE=/run/secrets/idp-bridge-key`; the file's content, without surrounding
whitespace, is the value. Two keys are paths themselves and are never read that way: `roles_file`, and a
provider's `ca_file` (keycloak, entra: a PEM bundle of the private CA its sign-in and admin calls trust).

An unknown key in the TOML is an error that names it and suggests the setting meant; an unknown
`{ENV_PREFIX}*` environment variable (such as the `{ENV_PREFIX}PORT=tcp://…` Kubernetes injects for a
Service named `idp-bridge`) is logged once as a warning and otherwise ignored.
"""


def type_name(annotation: Any) -> str:
    """A reader's name for a field type: `text`, `integer`, `list of text`, `"file" | "smtp"`, …"""
    origin = get_origin(annotation)
    if origin is Literal:
        return " | ".join(f'"{value}"' for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in get_args(annotation) if arg is not type(None))
    if origin is list:
        return f"list of {type_name(get_args(annotation)[0])}"
    if origin is dict:
        value = get_args(annotation)[1]
        return "tables" if value is Any or get_origin(value) is dict or _is_model(value) else \
            f"table of {type_name(value)}"
    if _is_model(annotation):
        return "table"
    names = {str: "text", int: "integer", float: "number", bool: "boolean", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def default_text(field: FieldInfo) -> str:
    """The default as it would be written in the TOML file."""
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined:
        return "required"
    if value in ("", [], {}):
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str | Path):
        return f'`"{value}"`'
    return f"`{value}`"


def bounds(field: FieldInfo) -> str:
    """The field's numeric bounds, e.g. `1 ≤ value ≤ 100`."""
    parts = []
    for item in field.metadata:
        if isinstance(item, Ge):
            parts.append(f"≥ {item.ge}")
        elif isinstance(item, Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, Le):
            parts.append(f"≤ {item.le}")
        elif isinstance(item, Lt):
            parts.append(f"< {item.lt}")
    return ", ".join(parts)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    """docs/configuration.md as the settings model describes it."""
    lines = [INTRO, "| setting | environment variable | type | default | description |", "|---|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        kind = type_name(field.annotation)
        limit = bounds(field)
        lines.append("| " + " | ".join(cell(part) for part in (
            f"`{name}`", f"`{ENV_PREFIX}{name.upper()}`", kind + (f" ({limit})" if limit else ""),
            default_text(field), field.description or "")) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m idp_bridge.config_reference",
                                     description="Write the configuration reference from the settings model.")
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="Only compare; exit 1 when the file differs.")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.path.read_text() if args.path.is_file() else ""
        if current != text:
            print(f"{args.path} is out of date: run python -m idp_bridge.config_reference", file=sys.stderr)
            return 1
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(text)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
