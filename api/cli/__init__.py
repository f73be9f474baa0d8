"""The operator CLI, `jpki` (typer + rich): the CA operator's commands on a data directory.

Scripts depend on these command names and options (architecture §1); keep them stable. The
devices have console scripts of their own (`jpki-card`, `jpki-station`, `jpki-phone`:
devices/*/cli.py), since they are clients of a CA, not its operator.

One module per command group (``api.cli.<module>``), loaded when the command line names it:
`jpki crl publish` imports the crl module and what its command needs, not the other groups, and
`jpki --help` lists every command from the names and summaries below without importing any of
them (docs/performance.md, "CLI start-up"). The modules import :mod:`api.cli.common`, never this
module and never each other, so the package has no import cycle (tests/api/test_cli_package.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    # typer's own (vendored) click: the types its group methods are declared with.
    from typer._click import Command, Context, HelpFormatter


@dataclass(frozen=True)
class Entry:
    """A command of the root: the module that defines it, and the summary `jpki --help` shows
    (the first paragraph of its help, checked against it by tests/api/test_cli_package.py)."""

    module: str
    summary: str
    group: bool = True  # a command group (the module's app), or one command of the module's app


COMMANDS: dict[str, Entry] = {
    "init": Entry("api.cli.serve", "Create the SoftHSM token, run the key ceremony, create or "
                  "migrate the database.", group=False),
    "serve": Entry("api.cli.serve", "Serve the REST API, OCSP and CRLs with uvicorn; logs are "
                   "JSON lines on stderr. Request heads, slow clients and connections are limited "
                   "(api.http_protocol); in production it belongs behind a proxy (README, \"In "
                   "production\").", group=False),
    "jobs": Entry("api.cli.jobs", "The background jobs of `jpki serve`: when each last ran, how "
                  "long it took, what it did.", group=False),
    "resident": Entry("api.cli.resident", "Residents and resident-registry events."),
    "cert": Entry("api.cli.cert", "Issue, renew, revoke and show certificates."),
    "card": Entry("api.cli.card", "Cards: register, lost / found / returned."),
    "client": Entry("api.cli.client", "API clients (operators, stations, call centre, RPs)."),
    "audit": Entry("api.cli.audit", "The hash-chained audit log."),
    "ca": Entry("api.cli.ca", "CA generations."),
    "hsm": Entry("api.cli.hsm", "HSM tokens: the key-replication ceremony (wrapped export and "
                 "import)."),
    "crl": Entry("api.cli.crl", "Certificate revocation lists."),
    "ocsp": Entry("api.cli.ocsp", "The OCSP responder's pre-signed responses."),
    "mobile": Entry("api.cli.mobile", "Smartphone certificates."),
    "notices": Entry("api.cli.notices", "Notices to holders: who must be told their "
                     "certificates expire."),
    "rp": Entry("api.cli.rp", "Relying parties (署名検証者): register, rotate secrets, suspend."),
    "municipality": Entry("api.cli.municipality", "The municipality registry: list, add, "
                          "rename, merge (市町村合併)."),
    "console": Entry("api.cli.console", "The operator console's accounts (counter clerks, call "
                     "centre, supervisors)."),
}


def load(name: str) -> Command:
    """The click command ``name`` of the root, built from its module's typer app."""
    entry = COMMANDS[name]
    module_app = importlib.import_module(entry.module).app
    command = typer.main.get_command(module_app)
    if not entry.group and isinstance(command, TyperGroup):
        command = command.commands[name]  # one of the module's top-level commands
    command.name = name
    return command


class _Commands(MutableMapping[str, "Command"]):
    """The root's subcommands by name, each loaded from its module on first access."""

    def __init__(self) -> None:
        self._loaded: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name not in self._loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self._loaded[name] = load(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        raise TypeError("the root's commands are fixed by api.cli.COMMANDS")

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._loaded if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS) + sum(name not in COMMANDS for name in self._loaded)


class JpkiGroup(TyperGroup):
    """The root group: every subcommand is loaded when named, and `jpki --help` lists them from
    their summaries without loading any."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands()
        self._listing = False

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)  # the names only (TyperGroup's own walks the items)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        entry = COMMANDS.get(cmd_name)
        if self._listing and entry is not None:
            # Only the name and the summary are shown: a stand-in, not the module.
            return TyperCommand(name=cmd_name, help=entry.summary)
        return self.commands.get(cmd_name)

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(help="jpki: a national PKI in the style of JPKI (公的個人認証サービス).",
                  cls=JpkiGroup, no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _root() -> None:
    # A callback makes the root a group although its commands are added only when loaded.
    pass


def main() -> None:
    app()
