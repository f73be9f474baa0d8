"""Shared fixtures: one SoftHSM token per session, databases (SQLite and PostgreSQL), a clock.

Real components only (architecture §9.1). A component that is missing makes its
tests *skip* on a workstation and *fail* in CI (``CI=true``): CI must never pass by skipping.

SoftHSM reads SOFTHSM2_CONF once per process (at C_Initialize) and python-pkcs11 keeps the module
loaded, so the whole test session shares one SoftHSM data directory and one token; CA keys are
generated once per session by the real key ceremony, and every test gets a fresh database into
which the session's CA generations are copied.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url

from api.composition import Services, build_services
from api.in_process import free_port, served_in_thread
from hsm import KeyStore, TokenConfig, activate_softhsm_config, default_module_path, ensure_token
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.audit import GENESIS_MAC
from jpki.model import CaGeneration, OcspResponder
from jpki.municipalities import load_seed
from jpki.settings import Settings
from jpki.store import create_store_engine
from jpki.store.tables import audit_head, metadata, municipalities
from tests.components import missing_component

TOKEN_LABEL = "jpki-test"
SO_PIN = "so-secret-8314"
USER_PIN = "user-secret-5521"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"



# scripts/mutation runs each test many times in one process (mutmut's stats pass, then a forked
# run per mutant): Hypothesis would see a class's method called from several instances, and a
# mutant's verdict must not depend on a random draw or on what an earlier run stored.
settings.register_profile("mutation", derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.differing_executors])


# --- running in parallel --------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)  # before `-m` selects: the marker added here counts
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """scripts/test runs the suite in two passes: on every core (pytest-xdist), all but the
    tests marked ``serial``; then those, alone. Serial are the tests that bound a latency
    (``timing``: another worker's load would decide them), the whole card side: pcscd is one
    per machine and vpcd's readers have fixed ports (docs/components.md), and the test cluster
    (``cluster``: fixed namespace names and addresses, six test hosts' worth of processes)."""
    for item in items:
        if (item.get_closest_marker("timing") or item.get_closest_marker("pcsc")
                or item.get_closest_marker("cluster")
                or item.nodeid.startswith("tests/devices/card/")):
            item.add_marker(pytest.mark.serial)


# --- clock --------------------------------------------------------------------------------


class FixedClock:
    """A settable clock: lifecycle rules are tested at exact instants, not at "now"."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def set(self, at: datetime) -> None:
        self.at = at.astimezone(UTC).replace(microsecond=0)

    def advance(self, **kwargs: float) -> None:
        self.at = self.at + timedelta(**kwargs)


START = datetime(2026, 11, 27, 1, 0, 0, tzinfo=UTC)  # 10:00 JST


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


# --- SoftHSM ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def softhsm_module() -> str:
    path = default_module_path()
    missing = []
    if not os.path.isfile(path):
        missing.append(f"PKCS#11 module {path}")
    if shutil.which("softhsm2-util") is None:
        missing.append("softhsm2-util")
    if missing:
        missing_component(f"SoftHSM2 is not installed: missing {', '.join(missing)}")
    return path


@pytest.fixture(scope="session")
def hsm_data_dir(tmp_path_factory: pytest.TempPathFactory, softhsm_module: str) -> Iterator[Path]:
    before = os.environ.get("SOFTHSM2_CONF")
    data_dir = tmp_path_factory.mktemp("hsm-data")
    activate_softhsm_config(data_dir)
    yield data_dir
    if before is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = before


@pytest.fixture(scope="session")
def token_created(hsm_data_dir: Path) -> bool:
    """What the first ensure_token of the session returned (a fresh directory: True)."""
    return ensure_token(hsm_data_dir, TOKEN_LABEL, SO_PIN, USER_PIN)


@pytest.fixture(scope="session")
def token_config(softhsm_module: str, token_created: bool) -> TokenConfig:
    return TokenConfig(module_path=softhsm_module, token_label=TOKEN_LABEL, user_pin=USER_PIN)


@pytest.fixture(scope="session")
def keystore(token_config: TokenConfig) -> Iterator[KeyStore]:
    store = KeyStore(token_config)
    yield store
    store.close()


# --- databases ----------------------------------------------------------------------------


def _pg_admin_url() -> str:
    return os.environ.get("JPKI_TEST_POSTGRES_URL", DEFAULT_PG)


@contextmanager
def empty_postgres_database(purpose: str = "test") -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server (``JPKI_TEST_POSTGRES_URL``), for a
    schema of the current metadata, migrations or `jpki init`; dropped afterwards. A server that
    does not answer is a missing component (tests/components.py)."""
    admin_url = make_url(_pg_admin_url()).set(drivername="postgresql+psycopg")
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to connect means no server
        missing_component(f"PostgreSQL is not reachable at {admin_url.host}:{admin_url.port} "
                          f"({type(exc).__name__}); set JPKI_TEST_POSTGRES_URL")
    name = f"jpki_{purpose}_{os.getpid()}_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database created for this test run on the PostgreSQL server, dropped afterwards."""
    with empty_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def _postgres_schema(postgres_database: str) -> str:
    engine = create_store_engine(postgres_database)
    metadata.create_all(engine)
    engine.dispose()
    return postgres_database


def _reset(engine: Engine) -> None:
    """Empty every table and put back the fixed rows (the audit head and municipalities)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
        conn.execute(insert(audit_head).values(id=1, seq=0, mac=GENESIS_MAC))
        conn.execute(insert(municipalities), [
            {"code": m.code, "name_ja": m.name_ja, "name_romaji": m.name_romaji}
            for m in load_seed()])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind, with the schema of the current metadata."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jpki.db'}"
        engine = create_store_engine(url)
        metadata.create_all(engine)
    else:
        url = request.getfixturevalue("_postgres_schema")
        engine = create_store_engine(url)
    _reset(engine)
    engine.dispose()
    return url


# --- the CA and the services ----------------------------------------------------------------


@dataclass(frozen=True)
class CaMaterial:
    generations: list[CaGeneration]
    responders: list[tuple[int, OcspResponder]]  # (index into generations, responder)


def make_settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url,
                    base_url="http://127.0.0.1:8000", hsm_user_pin=USER_PIN)


@pytest.fixture(scope="session")
def ca_material(tmp_path_factory: pytest.TempPathFactory, keystore: KeyStore) -> CaMaterial:
    """Run the real key ceremony once per session and keep what it made."""
    tmp = tmp_path_factory.mktemp("ceremony")
    url = f"sqlite:///{tmp / 'ceremony.db'}"
    engine = create_store_engine(url)
    metadata.create_all(engine)
    _reset(engine)
    engine.dispose()
    services = build_services(make_settings(tmp, url), keys=keystore,
                              clock=FixedClock(START - timedelta(days=1)))
    services.cas.ceremony(authorize(Principal.local_operator("pytest"), Operation.CA_CEREMONY))
    with services.uow() as uow:
        gens = list(uow.cas.generations())
        responders = [(i, r) for i, g in enumerate(gens) for r in uow.cas.responders(g.id or 0)]
    services.uow.engine.dispose()
    services.read_engine.dispose()
    return CaMaterial(generations=gens, responders=responders)


def install_ca(services: Services, material: CaMaterial) -> None:
    with services.uow() as uow:
        new_ids = []
        for gen in material.generations:
            copy = replace(gen, id=None)
            uow.cas.add_generation(copy)
            new_ids.append(copy.id)
        for index, responder in material.responders:
            uow.cas.add_responder(replace(responder, id=None,
                                          ca_generation_id=new_ids[index] or 0))
        uow.commit()


ServicesFactory = Callable[..., Services]


@pytest.fixture
def services(database_url: str, tmp_path: Path, keystore: KeyStore, ca_material: CaMaterial,
             clock: FixedClock) -> Iterator[Services]:
    svc = build_services(make_settings(tmp_path, database_url), keys=keystore, clock=clock)
    install_ca(svc, ca_material)
    yield svc
    svc.audit_group.close()
    svc.audit_writer.close()  # its connection is checked out for good: dispose() would not
    svc.uow.engine.dispose()
    svc.read_engine.dispose()


@pytest.fixture
def operator() -> Principal:
    return Principal.local_operator("pytest")


# --- subjects -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def subject_keys() -> list[bytes]:
    """RSA-2048 public keys (PEM) standing in for keys generated on cards.

    Generated once per session; every test has a fresh database, so reusing them across tests is
    fine, and within a test each is certified at most once.
    """
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return [rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo) for _ in range(10)]


@pytest.fixture
def new_resident(services: Services, operator: Principal) -> Callable[..., str]:
    """Register a resident; returns the id. Defaults: an adult of 清瀬市."""
    from datetime import date

    def make(*, name: str = "山田 太郎", birth: date = date(1990, 1, 2), sex: int = 1,
             address: str = "東京都清瀬市中里一丁目２番３号", municipality: str = "132217",
             dv_support: bool = False) -> str:
        return services.residents.register(
            authorize(operator, Operation.RESIDENT_REGISTER), name=name, birth_date=birth,
            sex=sex, address=address, municipality_code=municipality, dv_support=dv_support).id

    return make


# --- a real HTTP server ---------------------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    services: Services


@contextmanager
def serve(services: Services, port: int) -> Iterator[LiveServer]:
    """The app served by uvicorn on a loopback port, in a thread of this process, so that real
    clients (openssl, pyhanko-certvalidator) can talk HTTP to it."""
    with served_in_thread(services, port) as url:
        yield LiveServer(url=url, services=services)


@pytest.fixture
def live_server(services: Services) -> Iterator[LiveServer]:
    with serve(services, free_port()) as server:
        yield server


@pytest.fixture
def served(database_url: str, tmp_path: Path, keystore: KeyStore, ca_material: CaMaterial,
           clock: FixedClock) -> Iterator[LiveServer]:
    """Services whose certificates carry this server's own URLs (CRL, OCSP, CA issuers), on a
    running server: what a relying party's software fetches really answers."""
    port = free_port()
    settings = make_settings(tmp_path, database_url).model_copy(
        update={"base_url": f"http://127.0.0.1:{port}"})
    clock.set(datetime.now(UTC))
    svc = build_services(settings, keys=keystore, clock=clock)
    install_ca(svc, ca_material)
    with serve(svc, port) as server:
        yield server
    svc.uow.engine.dispose()
    svc.read_engine.dispose()
