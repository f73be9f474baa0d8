"""What the benchmarks share: a private SoftHSM token, fresh databases, residents, subject keys,
phase timers and facts about the machine.

Real components only, as in the tests: SoftHSM2 through PKCS#11, SQLite files and databases
created on the local PostgreSQL server. SoftHSM reads ``SOFTHSM2_CONF`` once per process, so a
benchmark process opens one :func:`bench_hsm` and runs every configuration against its token;
the key ceremony is idempotent and reuses the CA keys already in the token, so each fresh
database gets the same CA.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.composition import Services, build_services
from hsm.keystore import KeyStore, TokenConfig
from hsm.softhsm import CONF_ENV, activate_softhsm_config, default_module_path, ensure_token
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.authority.recipe import Recipe, load_recipe
from jpki.settings import Settings

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL_ENVS = ("JPKI_BENCH_POSTGRES_URL", "JPKI_TEST_POSTGRES_URL")
OPERATOR = Principal.local_operator("bench")
MUNICIPALITY = "132217"  # 清瀬市
KEY_CACHE = Path(tempfile.gettempdir()) / "jpki-bench" / "subject-keys-rsa2048.pem"
REPO = Path(__file__).resolve().parents[1]


class BenchError(RuntimeError):
    """A component the benchmark needs is missing or misbehaved."""


# --- SoftHSM ------------------------------------------------------------------------------


@dataclass
class BenchHsm:
    data_dir: Path
    recipe: Recipe
    keys: KeyStore
    pool_keys: KeyStore
    """The same token without the bulk signing process (batch signatures on pooled sessions)."""


@contextlib.contextmanager
def bench_hsm(*, pool_size: int = 4, parent: Path | None = None,
              keep: Path | None = None) -> Iterator[BenchHsm]:
    """A temporary data directory with its own SoftHSM config and token, and a key store on it.

    Removed afterwards, unless it is ``keep``: then it is made if missing, its token (and the
    PINs, in a file readable by its owner only) reused by the next run, and left in place — what
    a bench that measures one loaded database before and after a change needs, since the rows
    name CA keys in that token. Call once per process (SoftHSM reads its config at
    C_Initialize).
    """
    module = default_module_path()
    if not os.path.isfile(module):
        raise BenchError(f"SoftHSM2 is not installed: no PKCS#11 module at {module}")
    if shutil.which("softhsm2-util") is None:
        raise BenchError("SoftHSM2 is not installed: softhsm2-util is not on PATH")
    recipe = load_recipe()
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        data_dir = keep.resolve()
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="jpki-bench-", dir=parent)).resolve()
    before = os.environ.get(CONF_ENV)
    try:
        activate_softhsm_config(data_dir)
        user_pin, so_pin = _bench_pins(data_dir if keep is not None else None)
        ensure_token(data_dir, recipe.token_label, so_pin, user_pin)
        # As the composition root opens a SoftHSM token (api.keystore): bulk signing in a
        # process of its own.
        config = TokenConfig(module_path=module, token_label=recipe.token_label,
                             user_pin=user_pin, pool_size=pool_size, bulk_process=True)
        keys = KeyStore(config)
        pool_keys = KeyStore(dataclasses.replace(config, bulk_process=False))
        try:
            yield BenchHsm(data_dir=data_dir, recipe=recipe, keys=keys, pool_keys=pool_keys)
        finally:
            pool_keys.close()
            keys.close()
    finally:
        if before is None:
            os.environ.pop(CONF_ENV, None)
        else:
            os.environ[CONF_ENV] = before
        if keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)


def _bench_pins(kept: Path | None) -> tuple[str, str]:
    """Fresh (user, SO) PINs; for a kept directory, those of its first run."""
    if kept is None:
        return secrets.token_hex(16), secrets.token_hex(16)
    path = kept / ".bench-pins.json"
    if path.exists():
        pins = json.loads(path.read_text())
        return str(pins["user"]), str(pins["so"])
    user, so = secrets.token_hex(16), secrets.token_hex(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"user": user, "so": so}, fh)
    return user, so


# --- databases ----------------------------------------------------------------------------


def postgres_admin_url() -> str:
    for name in PG_URL_ENVS:
        value = os.environ.get(name)
        if value:
            return value
    return DEFAULT_PG


@contextlib.contextmanager
def fresh_database(kind: str, data_dir: Path, tag: str) -> Iterator[str]:
    """The URL of a new, empty database: a SQLite file in ``data_dir``, or a database created on
    the PostgreSQL server (``$JPKI_BENCH_POSTGRES_URL``, ``$JPKI_TEST_POSTGRES_URL`` or the local
    default) and dropped on exit."""
    if kind == "sqlite":
        path = data_dir / f"{tag}.sqlite"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}")
    admin_url = make_url(postgres_admin_url()).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"jpki_bench_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        raise BenchError(f"PostgreSQL is not usable at {admin_url.host}:{admin_url.port} "
                         f"({type(exc).__name__}); set JPKI_BENCH_POSTGRES_URL or run with "
                         "--database sqlite") from exc
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_server_version() -> str | None:
    admin_url = make_url(postgres_admin_url()).set(drivername="postgresql+psycopg")
    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())
    except Exception:
        return None
    finally:
        engine.dispose()


def raw_commit_rate(url: str, seconds: float = 2.0) -> float:
    """Durable one-row transactions per second on ``url``, one writer, through the store's own
    engine settings (SQLite: WAL, synchronous=FULL, BEGIN IMMEDIATE): the floor under every
    commit the pipeline makes. Uses a scratch table, dropped afterwards."""
    from jpki.store.engine import create_store_engine

    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE bench_commits (id INTEGER PRIMARY KEY, v TEXT)"))
        insert = text("INSERT INTO bench_commits (id, v) VALUES (:id, :v)")
        n = 0
        began = time.perf_counter()
        deadline = began + seconds
        while time.perf_counter() < deadline:
            n += 1
            with engine.begin() as conn:
                conn.execute(insert, {"id": n, "v": "x" * 64})
        rate = n / (time.perf_counter() - began)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE bench_commits"))
        return rate
    finally:
        engine.dispose()


def open_services(hsm: BenchHsm, url: str) -> Services:
    """Services on ``url`` (schema by the migrations), after the real key ceremony.

    Close with ``services.uow.engine.dispose()``: ``services.close()`` would close the shared
    key store too.
    """
    settings = Settings(data_dir=hsm.data_dir, database_url=url)
    services = build_services(settings, keys=hsm.keys, migrate=True)
    services.cas.ceremony(authorize(OPERATOR, Operation.CA_CEREMONY))
    return services


# --- residents and subject keys -----------------------------------------------------------

_SURNAMES = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤",
             "吉田", "山田", "佐々木", "山口", "松本", "井上", "木村", "林", "斎藤", "清水",
             "山崎", "森", "池田", "橋本", "阿部", "石川", "山下", "中島", "石井", "小川"]
_GIVEN_1 = ["健", "翔", "大", "陽", "蓮", "優", "悠", "湊", "結", "美",
            "真", "和", "恵", "智", "直", "光", "春", "秋", "雅", "友"]
_GIVEN_2 = ["太", "子", "斗", "人", "花", "菜", "也", "介", "里", "香",
            "樹", "史", "代", "美", "奈", "平", "郎", "枝", "希", "彦"]


def resident_fields(index: int) -> dict[str, Any]:
    """Distinct basic 4 information for resident ``index`` (12,000 distinct names; birth dates
    distinct for 20,000 residents, all adults)."""
    surname = _SURNAMES[index % len(_SURNAMES)]
    rest = index // len(_SURNAMES)
    given = _GIVEN_1[rest % len(_GIVEN_1)] + _GIVEN_2[(rest // len(_GIVEN_1)) % len(_GIVEN_2)]
    birth = date(1945, 1, 1) + timedelta(days=index % 20_000)
    return {"name": f"{surname} {given}", "birth_date": birth, "sex": 1 + index % 2,
            "address": f"東京都清瀬市中里{1 + index % 6}丁目{1 + index % 30}番{1 + index % 20}号",
            "municipality_code": MUNICIPALITY}


def register_residents(services: Services, count: int, start: int = 0) -> list[str]:
    register = authorize(OPERATOR, Operation.RESIDENT_REGISTER)
    return [services.residents.register(register, **resident_fields(i)).id
            for i in range(start, start + count)]


def _generate_public_keys(count: int) -> list[bytes]:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return [rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo) for _ in range(count)]


def _read_key_cache(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    end = b"-----END PUBLIC KEY-----\n"
    return [block + end for block in data.split(end) if block.strip()]


def subject_keys(count: int, cache: Path | None = KEY_CACHE,
                 log: Callable[[str], None] = lambda _: None) -> list[bytes]:
    """``count`` distinct RSA-2048 public keys (PEM SubjectPublicKeyInfo) standing in for keys
    generated on cards. Only the public halves are kept, in ``cache`` (a temporary file) so a
    second run does not generate them again; missing ones are generated on every core."""
    keys = _read_key_cache(cache) if cache is not None else []
    keys = list(dict.fromkeys(keys))  # distinct, in order
    missing = count - len(keys)
    if missing > 0:
        workers = max(1, os.cpu_count() or 1)
        log(f"generating {missing} RSA-2048 subject keys on {workers} processes "
            "(not measured)...")
        began = time.perf_counter()
        chunks = [missing // workers + (1 if i < missing % workers else 0)
                  for i in range(workers)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for batch in pool.map(_generate_public_keys, [c for c in chunks if c]):
                keys.extend(batch)
        log(f"  done in {time.perf_counter() - began:.1f} s")
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".keys.", dir=cache.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(b"".join(keys))
            os.replace(tmp, cache)
    return keys[:count]


# --- timing -------------------------------------------------------------------------------


_MISSING = object()


class PhaseTimer:
    """Exclusive time per label: a wrapped call's time minus that of wrapped calls inside it.

    Threads keep separate stacks, so it is correct with several threads, but the breakdown is
    easiest to read from a single-threaded run.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._restore: list[Callable[[], None]] = []

    def _stack(self) -> list[float]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def wrap(self, label: str | Callable[[], str], fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = self._stack()
            stack.append(0.0)
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - began
                children = stack.pop()
                if stack:
                    stack[-1] += elapsed
                name = label() if callable(label) else label
                with self._lock:
                    self.seconds[name] += elapsed - children
                    self.calls[name] += 1

        return timed

    def patch(self, owner: Any, attribute: str, label: str | Callable[[], str]) -> None:
        """Replace ``owner.attribute`` (a module's function, a class's method or an instance's
        bound method) by a timed version until :meth:`restore`."""
        if isinstance(owner, type):
            original = owner.__dict__[attribute]  # the plain function, not a bound method
            setattr(owner, attribute, self.wrap(label, original))
            self._restore.append(lambda: setattr(owner, attribute, original))
            return
        own = vars(owner).get(attribute, _MISSING) if hasattr(owner, "__dict__") else _MISSING
        setattr(owner, attribute, self.wrap(label, getattr(owner, attribute)))

        def undo() -> None:
            if own is _MISSING:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, own)

        self._restore.append(undo)

    def on_restore(self, undo: Callable[[], None]) -> None:
        self._restore.append(undo)

    def restore(self) -> None:
        while self._restore:
            self._restore.pop()()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(q) - 1))]


# --- the machine --------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _filesystem(path: Path) -> str:
    best, fstype = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, fstype = parts[1], parts[2]
    return fstype


def _softhsm_version() -> str:
    try:
        out = subprocess.run(["softhsm2-util", "--version"], capture_output=True, text=True,
                             timeout=10, check=False)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def machine_info(data_dir: Path) -> dict[str, Any]:
    import sqlite3

    import cryptography
    import sqlalchemy

    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        "softhsm": _softhsm_version(),
        "data_dir_filesystem": _filesystem(data_dir),
        "load_average_at_start": load_average(),
        "revision": _revision(),
    }


def _revision() -> str:
    """``git describe --always --dirty`` of the working tree the benchmark ran from."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10, check=False,
                             cwd=Path(__file__).resolve().parents[1])
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def child_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a running child process (0 for none), from /proc."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # proc(5): utime and stime are fields 14 and 15, in clock ticks; [1] starts at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# --- the jpki command, for benches that drive a served process ----------------------------


def jpki_command() -> list[str]:
    """The installed ``jpki`` script beside this interpreter, else the module."""
    script = Path(sys.executable).with_name("jpki")
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


def run_cli(args: list[str], env: dict[str, str]) -> Any:
    """``jpki ARGS --json`` in the repository; its JSON, or BenchError with its stderr."""
    out = subprocess.run([*jpki_command(), *args, "--json"], env=env, cwd=REPO,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise BenchError(f"jpki {' '.join(args[:2])} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout)
