"""The README's commands are the CLI's commands.

Every `jpki …` line in the README's code blocks is looked up in the typer command tree (nothing is
run): the command must exist, every option shown must be one of its options, and its required
options must be shown — a reader copying a line should not meet "Missing option". Conversely,
every command of the tree must appear in the README, with each of its own options somewhere (the
ones every command of the CA takes, `--data-dir` and `--json`, are described once in prose).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from api.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
# Described once for all in the README's prose rather than on every line.
EVERYWHERE = {"--data-dir", "--json", "--help"}
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Shown:
    line: str
    words: list[str]  # after `jpki`


def readme_commands(text: str) -> list[Shown]:
    """`jpki …` command lines of every fenced code block, continuations joined, comments gone;
    several commands on a line may be separated by `;` or `&&`."""
    found = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            command: list[str] = []
            for word in [*lexer, ";"]:
                if word in (";", "&&", "&"):
                    if command and (command[0] == "jpki" or command[0].endswith("/jpki")):
                        found.append(Shown(line.strip(), command[1:]))
                    command = []
                else:
                    command.append(word)
    return found


def tree() -> Any:
    return typer.main.get_command(app)


def leaves(command: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    subs = getattr(command, "commands", None)
    if subs is None:
        return {path: command}
    out: dict[tuple[str, ...], Any] = {}
    for name, sub in subs.items():
        out.update(leaves(sub, (*path, name)))
    return out


def option_names(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if param.param_type_name == "option":
            names.update(param.opts, param.secondary_opts)
    return names


def resolve(shown: Shown) -> tuple[tuple[str, ...], Any, list[str]]:
    """The command path, the command and the option names a README line shows."""
    command, path, words = tree(), (), list(shown.words)
    while words and getattr(command, "commands", None) is not None:
        sub = command.commands.get(words[0])
        if sub is None:
            break
        command, path = sub, (*path, words.pop(0))
    options = []
    for word in words:
        word = word.strip("[]")
        if word.startswith("--"):
            options.append(word.partition("=")[0])
    return path, command, options


def test_the_parser_reads_what_a_readme_shows() -> None:
    text = ("```sh\njpki cert issue --resident ID --kind sign|auth \\\n"
            "    [--card-expiry YYYY-MM-DD]  # a comment --not-an-option\n"
            "jpki ca list; jpki ca export --out DIR && jpki audit verify\n"
            "scripts/run  # `jpki init`\n```\nprose: jpki serve --nowhere\n")
    assert [s.words for s in readme_commands(text)] == [
        ["cert", "issue", "--resident", "ID", "--kind", "sign|auth", "[--card-expiry",
         "YYYY-MM-DD]"],
        ["ca", "list"], ["ca", "export", "--out", "DIR"], ["audit", "verify"]]
    path, _, options = resolve(readme_commands(text)[0])
    assert path == ("cert", "issue")
    assert options == ["--resident", "--kind", "--card-expiry"]


@pytest.fixture(scope="module")
def shown() -> list[Shown]:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert len(commands) > 10  # the parser found the code blocks
    return commands


def test_every_command_the_readme_shows_exists_with_the_options_shown(
        shown: list[Shown]) -> None:
    problems = []
    for line in shown:
        path, command, options = resolve(line)
        if getattr(command, "commands", None) is not None:
            if options != ["--help"]:
                problems.append(f"not a command: jpki {' '.join(line.words)}")
            continue
        unknown = [o for o in options if o not in option_names(command)]
        if unknown:
            problems.append(f"jpki {' '.join(path)} has no {', '.join(unknown)}")
        required = [p.opts[0] for p in command.params
                    if p.param_type_name == "option" and p.required]
        missing = [o for o in required if o not in options]
        if missing:
            problems.append(f"jpki {' '.join(path)} is shown without its required "
                            f"{', '.join(missing)}")
    assert problems == []


def test_every_command_of_the_cli_is_in_the_readme(shown: list[Shown]) -> None:
    documented = {resolve(line)[0] for line in shown}
    missing = [" ".join(path) for path in leaves(tree()) if path not in documented]
    assert missing == []


def test_every_option_of_every_command_is_in_the_readme(shown: list[Shown]) -> None:
    documented: dict[tuple[str, ...], set[str]] = {}
    for line in shown:
        path, _, options = resolve(line)
        documented.setdefault(path, set()).update(options)
    missing = {}
    for path, command in leaves(tree()).items():
        own = [p.opts[0] for p in command.params if p.param_type_name == "option"
               and p.opts[0] not in EVERYWHERE]
        absent = [o for o in own if o not in documented.get(path, set())]
        if absent:
            missing[" ".join(path)] = absent
    assert missing == {}
