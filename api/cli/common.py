"""What the command groups of `jpki` share: the options every command takes, the local operator,
the services, JSON output and errors.

Every command takes ``--data-dir`` (default ``$JPKI_DATA_DIR``, then ``./var``). Results go to
stdout (``--json`` for machines); errors go to stderr as ``error: <code>: <detail>`` (or a JSON
object with ``--json``) with a non-zero exit status (architecture §1).

Cheap to import: typer and the standard library. The services (``api.composition``: the store,
the HSM, the whole core), rich and cryptography are imported when a command first needs them,
so that a command's process pays only for what it uses (docs/performance.md, "CLI start-up").
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Protocol, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from api.composition import Services
    from jpki.access.authz import Grant, Operation
    from jpki.access.principals import Principal
    from jpki.settings import Settings

DataDir = Annotated[Path, typer.Option("--data-dir", envvar="JPKI_DATA_DIR",
                                       help="Data directory (SQLite, SoftHSM token, secrets).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]
DEFAULT_DATA_DIR = Path("var")


def group(help_text: str) -> typer.Typer:
    """A command group's typer app, as the root app (:mod:`api.cli`) loads it."""
    # The callback keeps it a group when it has one command (`jpki crl publish`, not `jpki crl`);
    # no completion options of its own: `jpki --install-completion` covers every group.
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False,
                       callback=_group_callback)


def _group_callback() -> None:
    pass


class LazyConsole:
    """A rich console made on first use: rich costs a command ~40 ms to import, and a command
    run with ``--json`` never prints through it."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, highlight=False, soft_wrap=True)
        return self._console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.console.print(*objects, **kwargs)


out = LazyConsole(stderr=False)
err = LazyConsole(stderr=True)


def escape(text: str) -> str:
    """``text`` safe inside rich markup: paths and other details can hold brackets."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def actor() -> Principal:
    """The local operator: whoever can read the data directory already holds every power of the
    CA (architecture §1), so the CLI asks for no credentials; what it changes is audited under
    ``cli:<user>``. Every command builds its principal here."""
    import getpass

    from jpki.access.principals import Principal

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal.local_operator(user)


# A forward reference: the bound is resolved by the type checker, and importing the table is
# left to the commands that use it.
P = TypeVar("P", bound="Operation")


def grant(operation: P) -> Grant[P]:
    """The local operator's grant for ``operation``, by the table of jpki.access.authz (it
    lists what the CLI may do, architecture §1)."""
    from jpki.access.authz import authorize

    return authorize(actor(), operation)


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return None
    if is_dataclass(value) and not isinstance(value, type):
        return {k: jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(data), ensure_ascii=False, indent=2) + "\n")


def fail(code: str, detail: str, as_json: bool) -> NoReturn:
    if as_json:
        sys.stderr.write(json.dumps({"error": {"code": code, "detail": detail}},
                                    ensure_ascii=False) + "\n")
    else:
        # Details can carry paths and other text with brackets: never let rich read them as markup.
        err.print(f"[bold red]error:[/] {escape(code)}: {escape(detail)}")
    raise typer.Exit(1)


class Closeable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closeable)


@contextmanager
def opened(data_dir: Path, as_json: bool, build: Callable[[Settings], C]) -> Iterator[C]:
    """What ``build`` makes of the settings on ``data_dir``, closed afterwards; every error
    becomes ``fail``."""
    from hsm.errors import HsmError
    from jpki.errors import JpkiError
    from jpki.settings import Settings

    built: C | None = None
    try:
        built = build(Settings(data_dir=data_dir))
        yield built
    except JpkiError as exc:
        fail(exc.code, exc.detail, as_json)
    except HsmError as exc:
        fail("hsm.error", str(exc), as_json)
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        # A bug or a broken component (database, disk). Its message can quote SQL parameters — the
        # basic 4 information among them — so, as in the API's logs, only the type is shown.
        kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
        fail("internal", f"unexpected {kind}; its message is withheld because it may quote "
             "personal data", as_json)
    finally:
        if built is not None:
            built.close()


def open_services(data_dir: Path, as_json: bool, *,
                  init: bool = False) -> AbstractContextManager[Services]:
    """Every service of the CA on ``data_dir`` (api.composition), as the HTTP app has them."""
    from api.composition import build_services

    return opened(data_dir, as_json, lambda settings: build_services(settings, init=init))


T = TypeVar("T")


def parse(fn: Callable[[str], T], text: str, what: str, as_json: bool) -> T:
    from jpki.errors import JpkiError

    try:
        return fn(text)
    except JpkiError as exc:
        fail(exc.code, exc.detail, as_json)  # keep the specific code (serial.invalid, …)
    except ValueError:
        fail("request.invalid", f"invalid {what}", as_json)


def parse_date(text: str) -> date:
    return date.fromisoformat(text)


def pem(der: bytes) -> bytes:
    """A DER certificate as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)


def write_pem(path: Path, der: bytes) -> None:
    path.write_bytes(pem(der))

