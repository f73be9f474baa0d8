"""The README's commands are the CLIs' commands.

Every console script the package declares (pyproject's ``[project.scripts]``: the operator's
`jpki` and the device tools `jpki-card`, `jpki-station`, `jpki-phone`, `jpki-kiosk`) is checked
against the README. Every line of the README's code blocks that runs one of them is looked up in
that script's typer command tree (nothing is run): the command must exist, every option shown
must be one of its options, and its required options must be shown — a reader copying a line
should not meet "Missing option". Conversely, every command of every tree must appear in the
README, with each of its own options somewhere (the ones every command of the CA takes,
`--data-dir` and `--json`, are described once in prose).
"""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# Described once for all in the README's prose rather than on every line.
EVERYWHERE = {"jpki": {"--data-dir", "--json", "--help"}}
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def console_scripts() -> dict[str, str]:
    """Script name → entry point (``module:function``), as pip installs them."""
    with (REPO / "pyproject.toml").open("rb") as fh:
        scripts: dict[str, str] = tomllib.load(fh)["project"]["scripts"]
    return scripts


def apps() -> dict[str, typer.Typer]:
    """Each console script's typer app: the ``app`` of the module its entry point is in."""
    found = {}
    for name, target in console_scripts().items():
        module = importlib.import_module(target.partition(":")[0])
        assert isinstance(module.app, typer.Typer), target
        found[name] = module.app
    return found


@dataclass(frozen=True)
class Shown:
    line: str
    program: str  # the console script: jpki, jpki-card, …
    words: list[str]  # after it


def readme_commands(text: str, programs: set[str] | None = None) -> list[Shown]:
    """Command lines of every fenced code block that run one of ``programs`` (the console
    scripts), continuations joined, comments gone; several commands on a line may be separated
    by `;` or `&&`."""
    programs = programs if programs is not None else set(console_scripts())
    found = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            command: list[str] = []
            for word in [*lexer, ";"]:
                if word in (";", "&&", "&"):
                    program = command[0].rpartition("/")[2] if command else ""
                    if program in programs:
                        found.append(Shown(line.strip(), program, command[1:]))
                    command = []
                else:
                    command.append(word)
    return found


def tree(program: str) -> Any:
    return typer.main.get_command(apps()[program])


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
    command, path, words = tree(shown.program), (), list(shown.words)
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
            "scripts/run  # `jpki init`\n"
            ".venv/bin/jpki-card issuer-key --out k.pem; jpki-cards x\n```\n"
            "prose: jpki serve --nowhere\n")
    assert [(s.program, s.words) for s in readme_commands(text, {"jpki", "jpki-card"})] == [
        ("jpki", ["cert", "issue", "--resident", "ID", "--kind", "sign|auth", "[--card-expiry",
                  "YYYY-MM-DD]"]),
        ("jpki", ["ca", "list"]), ("jpki", ["ca", "export", "--out", "DIR"]),
        ("jpki", ["audit", "verify"]), ("jpki-card", ["issuer-key", "--out", "k.pem"])]
    path, _, options = resolve(readme_commands(text)[0])
    assert path == ("cert", "issue")
    assert options == ["--resident", "--kind", "--card-expiry"]


@pytest.fixture(scope="module")
def shown() -> list[Shown]:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert len(commands) > 10  # the parser found the code blocks
    return commands


def test_every_console_script_is_checked() -> None:
    # The operator's CLI and the device tools, each with its own tree (not one inside another).
    assert set(console_scripts()) == {"jpki", "jpki-card", "jpki-station", "jpki-phone",
                                      "jpki-kiosk"}
    trees = {name: tree(name) for name in console_scripts()}
    assert not {"station", "phone"} & set(trees["jpki"].commands)
    assert set(trees["jpki"].commands["card"].commands) == {"add", "event"}
    assert {"emulate", "issuer-key"} <= set(trees["jpki-card"].commands)
    assert {"enroll", "renew", "pin-reset", "status"} <= set(trees["jpki-station"].commands)
    assert {"init", "apply", "status", "revoke"} <= set(trees["jpki-phone"].commands)
    assert {"reset", "app-password"} <= set(trees["jpki-kiosk"].commands)


def test_every_command_the_readme_shows_exists_with_the_options_shown(
        shown: list[Shown]) -> None:
    problems = []
    for line in shown:
        path, command, options = resolve(line)
        name = " ".join([line.program, *path])
        if getattr(command, "commands", None) is not None:
            if options != ["--help"]:
                problems.append(f"not a command: {line.program} {' '.join(line.words)}")
            continue
        unknown = [o for o in options if o not in option_names(command)]
        if unknown:
            problems.append(f"{name} has no {', '.join(unknown)}")
        required = [p.opts[0] for p in command.params
                    if p.param_type_name == "option" and p.required]
        missing = [o for o in required if o not in options]
        if missing:
            problems.append(f"{name} is shown without its required {', '.join(missing)}")
    assert problems == []


@pytest.mark.parametrize("program", sorted(console_scripts()))
def test_every_command_of_the_cli_is_in_the_readme(shown: list[Shown], program: str) -> None:
    documented = {resolve(line)[0] for line in shown if line.program == program}
    missing = [" ".join(path) for path in leaves(tree(program)) if path not in documented]
    assert missing == []


@pytest.mark.parametrize("program", sorted(console_scripts()))
def test_every_option_of_every_command_is_in_the_readme(shown: list[Shown],
                                                        program: str) -> None:
    documented: dict[tuple[str, ...], set[str]] = {}
    for line in shown:
        if line.program == program:
            path, _, options = resolve(line)
            documented.setdefault(path, set()).update(options)
    everywhere = EVERYWHERE.get(program, {"--help"})
    missing = {}
    for path, command in leaves(tree(program)).items():
        own = [p.opts[0] for p in command.params if p.param_type_name == "option"
               and p.opts[0] not in everywhere]
        absent = [o for o in own if o not in documented.get(path, set())]
        if absent:
            missing[" ".join(path)] = absent
    assert missing == {}
