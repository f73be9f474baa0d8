"""What `jpki crl publish` runs on: the CRL service wired exactly as :mod:`api.composition` wires
it — by the same function, :func:`crl_service` — and nothing else.

A cron'd `jpki crl publish` is a process of its own each time, so what it imports and builds
besides the CRL service is paid on every publication: the other contexts' modules, the OCSP
responder's keys and cached responses, the API clients' secret verifier and its threads, the
relying parties' group audit writer (docs/performance.md, "CLI start-up"). Here only the
settings, the key store, the store's engines, the CA service (whose generations the CRLs are
signed by) and the CRL service are built.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from api.keystore import open_keystore
from hsm.keystore import KeyStore
from jpki.audit import AuditLog
from jpki.authority.ca import CaService
from jpki.authority.recipe import Recipe, load_recipe
from jpki.ports import Clock, SystemClock
from jpki.revocation.crls import CrlService
from jpki.settings import Settings
from jpki.store import UnitOfWorkFactory, create_store_engine
from jpki.store.crls import SqlCrlEntrySource
from jpki.urls import ServiceUrls


def crl_service(settings: Settings, uow: UnitOfWorkFactory, read_engine: Engine, keys: KeyStore,
                clock: Clock, recipe: Recipe, urls: ServiceUrls, cas: CaService) -> CrlService:
    """The CRL service, as both :func:`api.composition.build_services` and
    :func:`build_crl_publishing` wire it: entries streamed from the read-only engine, files
    under ``<data>/crl``."""
    return CrlService(uow, SqlCrlEntrySource(read_engine), keys, clock, recipe, urls, cas,
                      settings.resolved_data_dir / "crl")


@dataclass
class CrlPublishing:
    settings: Settings
    keys: KeyStore
    engine: Engine
    read_engine: Engine
    crls: CrlService

    def close(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()
        self.keys.close()


def build_crl_publishing(settings: Settings, *, clock: Clock | None = None,
                         keys: KeyStore | None = None) -> CrlPublishing:
    """The CRL service on ``settings``' data directory, opened as :func:`build_services` opens
    it (no token or database is created or migrated here: that is `jpki init`'s)."""
    recipe = load_recipe(settings.recipe)
    if keys is None:
        keys = open_keystore(settings, recipe)
    try:
        engine = create_store_engine(settings.resolved_database_url)
        read_engine = create_store_engine(settings.resolved_database_url, read_only=True)
    except BaseException:
        keys.close()
        raise
    uow = UnitOfWorkFactory(engine)
    clock = clock or SystemClock()
    urls = ServiceUrls(settings.public_base_url)
    cas = CaService(uow, keys, clock, recipe, AuditLog(keys, recipe.audit_key_label, clock))
    return CrlPublishing(settings=settings, keys=keys, engine=engine, read_engine=read_engine,
                         crls=crl_service(settings, uow, read_engine, keys, clock, recipe, urls,
                                          cas))
