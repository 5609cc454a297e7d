"""The README's CLI block is the command tree: every command and option there is, and nothing that is not."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from idp_bridge.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"


def cli_block() -> list[str]:
    """The lines of the first fenced block after the `## CLI` heading."""
    text = README.read_text()
    after = text[text.index("\n## CLI\n"):]
    start = after.index("```\n") + len("```\n")
    return [line for line in after[start:after.index("```", start)].splitlines() if line.strip()]


def leaf_commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], click.Command]:
    """Every command that does something, by its words after `idp-bridge`; hidden ones are not for the README."""
    found: dict[tuple[str, ...], click.Command] = {}
    for name, command in group.commands.items():
        if command.hidden:
            continue
        if isinstance(command, click.Group):
            found.update(leaf_commands(command, (*path, name)))
        else:
            found[(*path, name)] = command
    return found


def resolve(line: str) -> tuple[tuple[str, ...], click.Command, list[str]]:
    """The command a README line names, and the words after it (`[`, `]` and `|` taken apart)."""
    words = line.split()
    assert words[0] == "idp-bridge", line
    command: click.Command = cli
    path: list[str] = []
    rest = words[1:]
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        path.append(rest[0])
        command = command.commands[rest[0]]
        rest = rest[1:]
    parts = [p for word in rest for p in word.replace("[", " ").replace("]", " ").replace("|", " ").split()]
    return tuple(path), command, parts


def options_of(command: click.Command) -> dict[str, click.Option]:
    return {name: param for param in command.params if isinstance(param, click.Option) and not param.hidden
            for name in (*param.opts, *param.secondary_opts)}


def check_line(line: str) -> tuple[tuple[str, ...], set[str]]:
    """Check one line against its command; return the command's path and the options the line names."""
    path, command, parts = resolve(line)
    options = options_of(command)
    named: set[str] = set()
    positional = 0
    i = 0
    while i < len(parts):
        part = parts[i]
        if part.startswith("-"):
            assert part in options, f"{line!r}: {' '.join(path) or 'idp-bridge'} has no option {part}"
            option = options[part]
            named.add(option.name or part)
            if not (option.is_flag or option.count):
                # An option that takes a value is followed by its placeholder or example.
                i += 1
                assert i < len(parts) and not parts[i].startswith("-"), f"{line!r}: {part} needs a value"
            i += 1
            continue
        if part != "...":
            positional += 1
        i += 1
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    assert positional == len(arguments), f"{line!r}: {len(arguments)} argument(s) expected, README shows {positional}"
    return path, named


def test_every_line_of_the_readme_cli_block_names_a_real_command_with_real_options() -> None:
    lines = cli_block()
    assert len(lines) > 5
    for line in lines:
        path, _ = check_line(line)
        assert path == () or path in leaf_commands(), f"{line!r} names a group, not a command"


def test_the_readme_cli_block_lists_every_command_and_every_option_of_each() -> None:
    named: dict[tuple[str, ...], set[str]] = {}
    for line in cli_block():
        path, options = check_line(line)
        named.setdefault(path, set()).update(options)
    missing_commands = sorted(" ".join(path) for path in leaf_commands() if path not in named)
    assert missing_commands == []
    for path, command in leaf_commands().items():
        expected = {p.name for p in command.params if isinstance(p, click.Option) and not p.hidden}
        assert expected - named[path] == set(), f"README's `idp-bridge {' '.join(path)}` lacks options"
    assert "version" in named[()]


@pytest.mark.parametrize("line", [
    "idp-bridge org list --format json",
    "idp-bridge api-key rotate --org SLUG",
    "idp-bridge db current REV",
    "idp-bridge serve --port",
])
def test_the_comparison_catches_an_unknown_option_or_a_wrong_argument_count(line: str) -> None:
    with pytest.raises(AssertionError):
        check_line(line)


def test_the_comparison_sees_which_options_a_line_leaves_out() -> None:
    path, named = check_line("idp-bridge invite list --org SLUG --json")
    assert path == ("invite", "list") and named == {"org_slug", "as_json"}
