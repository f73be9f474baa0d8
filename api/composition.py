"""The composition root: settings → store, HSM key store, clock → the core's services.

Both adapters that face people — the HTTP app (:mod:`api.app`) and the operator CLI
(:mod:`api.cli`) — build their services here, so that they can never disagree about wiring.
`jpki crl publish` builds the CRL service alone (:mod:`api.crl_publishing`) with the same function
as here, and the token is opened by :mod:`api.keystore` for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from api.crl_publishing import crl_service
from api.keystore import open_keystore
from hsm.keystore import KeyStore
from jpki.access.auth_throttle import AuthThrottle, FailureBudgets
from jpki.access.client_secrets import LegacyVerifier, SecretHasher
from jpki.access.clients import ClientService
from jpki.access.console_accounts import ConsoleAccounts, PasswordVerifier
from jpki.audit import AuditLog
from jpki.authority.ca import CaService
from jpki.authority.recipe import Recipe, load_recipe
from jpki.group_audit import GroupAudit
from jpki.issuance.service import IssuanceService
from jpki.jobs import JobLedger
from jpki.mobile.service import MobileService
from jpki.mobile.sweep import MobileSweep
from jpki.ports import Clock, SystemClock
from jpki.rate_limits import TokenBuckets, TooManyRequests
from jpki.registry.call_centre import CallCentre
from jpki.registry.cards import CardService
from jpki.registry.certificates import CertificateQueries
from jpki.registry.counter import CounterService
from jpki.registry.dv_support import DvSupport
from jpki.registry.expiry_notices import ExpiryNotices
from jpki.registry.municipalities import MunicipalityRegistry
from jpki.registry.residents import ResidentService
from jpki.registry.station_tasks import StationTasks
from jpki.registry.statistics import Statistics
from jpki.relying_parties.consents import ConsentService
from jpki.relying_parties.latest_basic4 import LatestBasic4Service
from jpki.relying_parties.linkage import LinkageService
from jpki.relying_parties.service import RelyingPartyService
from jpki.relying_parties.status_lookup import StatusLookup
from jpki.revocation.crls import CrlService
from jpki.revocation.ocsp import OcspResponder
from jpki.revocation.service import RevocationService
from jpki.settings import Settings
from jpki.store import UnitOfWorkFactory, create_store_engine
from jpki.store.audit_writer import SqlAuditWriter
from jpki.store.expiry_notices import SqlNoticeSource
from jpki.store.limits import SqlLimits
from jpki.store.ocsp import SqlOcspStore
from jpki.store.ocsp_traffic import SqlOcspTraffic
from jpki.store.rp_usage import SqlRpUsageRollup
from jpki.store.statistics import SqlStatisticsFactory
from jpki.store.status_feed import SqlStatusChangeFeed
from jpki.urls import ServiceUrls


@dataclass
class Services:
    settings: Settings
    recipe: Recipe
    keys: KeyStore
    uow: UnitOfWorkFactory
    clock: Clock
    urls: ServiceUrls
    audit: AuditLog
    cas: CaService
    residents: ResidentService
    cards: CardService
    call_centre: CallCentre
    dv_support: DvSupport
    municipalities: MunicipalityRegistry
    station_tasks: StationTasks
    issuance: IssuanceService
    revocation: RevocationService
    clients: ClientService
    certificates: CertificateQueries
    statistics: Statistics
    expiry_notices: ExpiryNotices
    crls: CrlService
    read_engine: Engine
    ocsp: OcspResponder
    counter: CounterService
    mobile: MobileService
    mobile_sweep: MobileSweep
    relying_parties: RelyingPartyService
    status_lookup: StatusLookup
    linkage: LinkageService
    consents: ConsentService
    latest_basic4: LatestBasic4Service
    # Read-only units of work that each read one snapshot (`jpki audit verify --state`).
    snapshots: UnitOfWorkFactory
    jobs: JobLedger
    auth_throttle: AuthThrottle
    # The limits every node shares, in the database (jpki.store.limits): the token buckets
    # relying parties' calls (in relying_parties) and requests without credentials
    # (``anonymous``, api.anonymous) lease blocks from, and the failure budgets.
    limits: SqlLimits
    anonymous: TokenBuckets
    # The operator console's people (api.console); their failures spend the same budgets.
    console: ConsoleAccounts
    # The group commit the relying-party calls' audit records share (and its writer thread),
    # and the connection of its own its batches run on.
    audit_group: GroupAudit
    audit_writer: SqlAuditWriter
    # The dashboard's feeds: each process's OCSP traffic, added by minute (api.ocsp_traffic),
    # and the relying parties' calls summed from the audit log (a maintenance job, api.app).
    ocsp_traffic: SqlOcspTraffic
    rp_usage: SqlRpUsageRollup

    def close(self) -> None:
        self.audit_group.close()
        self.audit_writer.close()
        self.clients.legacy.close()
        self.uow.engine.dispose()
        self.read_engine.dispose()
        self.keys.close()


def build_services(settings: Settings, *, clock: Clock | None = None, init: bool = False,
                   migrate: bool = False, keys: KeyStore | None = None) -> Services:
    recipe = load_recipe(settings.recipe)
    if keys is None:
        keys = open_keystore(settings, recipe, create_token=init)
    engine = create_store_engine(settings.resolved_database_url)
    if init or migrate:
        # Imported here: importing Alembic costs every other process (the API workers,
        # `crl publish`) 70 ms of start-up for nothing (measured warm).
        from jpki.store.migrate import upgrade

        upgrade(engine)
    uow = UnitOfWorkFactory(engine)
    clock = clock or SystemClock()
    urls = ServiceUrls(settings.public_base_url)
    audit = AuditLog(keys, recipe.audit_key_label, clock)
    cas = CaService(uow, keys, clock, recipe, audit)
    issuance = IssuanceService(uow, keys, clock, recipe, urls, cas, audit)
    read_engine = create_store_engine(settings.resolved_database_url, read_only=True)
    crls = crl_service(settings, uow, read_engine, keys, clock, recipe, urls, cas)
    # Read-only units of work for the relying-party hot paths (authentication, admission,
    # status lookups, standing consents): on SQLite they do not queue behind the writer.
    reader = UnitOfWorkFactory(read_engine)
    clients = ClientService(
        uow, clock, audit, SecretHasher(keys, recipe.client_secret_key_label),
        LegacyVerifier(settings.auth_legacy_workers, settings.auth_legacy_queue),
        read_uow=reader)
    # Their audit records (disclosures, refusals) share group commits, each batch a plain
    # transaction on a connection of the group's own (jpki.store.audit_writer).
    audit_writer = SqlAuditWriter(engine)
    group = GroupAudit(uow, audit, batches=audit_writer)
    limits = SqlLimits(engine, read_engine)
    throttle = auth_throttle(settings, limits)
    return Services(
        settings=settings, recipe=recipe, keys=keys, uow=uow, clock=clock, urls=urls,
        audit=audit, cas=cas,
        residents=ResidentService(uow, clock, audit),
        cards=CardService(uow, clock, audit),
        call_centre=CallCentre(uow, clock, audit),
        dv_support=DvSupport(uow, clock, audit),
        municipalities=MunicipalityRegistry(uow, clock, audit),
        station_tasks=StationTasks(uow, clock, audit),
        issuance=issuance,
        revocation=RevocationService(uow, clock, audit),
        clients=clients,
        certificates=CertificateQueries(uow, clock),
        statistics=Statistics(SqlStatisticsFactory(read_engine), clock),
        expiry_notices=ExpiryNotices(SqlNoticeSource(read_engine), uow, clock, audit),
        crls=crls,
        read_engine=read_engine,
        ocsp=ocsp_responder(uow, reader, keys, clock, recipe),
        counter=CounterService(uow, clock, audit),
        mobile=MobileService(uow, clock, audit, issuance,
                             max_outstanding=settings.challenges_max_outstanding,
                             max_per_source=settings.challenges_max_per_source),
        mobile_sweep=mobile_sweep(settings, uow, clock, audit),
        relying_parties=RelyingPartyService(
            uow, clock, audit, clients,
            TokenBuckets(limits, "rp", settings.rp_rate_per_second, settings.rp_rate_burst),
            secret_overlap=timedelta(hours=settings.rp_secret_overlap_hours), read_uow=reader,
            group=group),
        status_lookup=StatusLookup(reader, clock, group=group),
        linkage=LinkageService(uow, clock, audit),
        consents=ConsentService(uow, clock, audit),
        latest_basic4=LatestBasic4Service(
            uow, clock, audit, consent_max_lifetime=timedelta(days=settings.consent_max_days),
            group=group),
        snapshots=UnitOfWorkFactory(read_engine, snapshot=True),
        jobs=JobLedger(uow),
        auth_throttle=throttle,
        limits=limits,
        anonymous=TokenBuckets(limits, "anonymous", settings.anonymous_rate_per_second,
                               settings.anonymous_rate_burst, error=TooManyRequests),
        console=ConsoleAccounts(uow, clock, audit, keys, recipe.client_secret_key_label,
                                PasswordVerifier(settings.console_password_checks), throttle),
        audit_group=group,
        audit_writer=audit_writer,
        ocsp_traffic=SqlOcspTraffic(engine),
        rp_usage=SqlRpUsageRollup(engine, clock.now),
    )


def ocsp_responder(uow: UnitOfWorkFactory, reader: UnitOfWorkFactory, keys: KeyStore,
                   clock: Clock, recipe: Recipe, **options: Any) -> OcspResponder:
    """The OCSP responder of one process, on the store's OCSP port and status-change feed
    (reads on ``reader``, the read-only engine); ``options`` go to OcspResponder."""
    options = {"validity": recipe.ocsp.validity,
               "max_live_signatures": recipe.ocsp.max_live_signatures, **options}
    return OcspResponder(SqlOcspStore(uow, reader), SqlStatusChangeFeed(reader), keys, clock,
                         **options)


def mobile_sweep(settings: Settings, uow: UnitOfWorkFactory, clock: Clock,
                 audit: AuditLog) -> MobileSweep:
    """The layered measures over smartphones with the settings' thresholds."""
    hold = settings.mobile_hold_silent_days
    return MobileSweep(uow, clock, audit,
                       flag_after=timedelta(days=settings.mobile_flag_silent_days),
                       hold_after=timedelta(days=hold) if hold else None,
                       interval=timedelta(seconds=settings.mobile_sweep_interval_seconds))


def auth_throttle(settings: Settings, limits: SqlLimits) -> AuthThrottle:
    """The failure budgets of the settings, counted in the database (``limits``)."""
    window, keys = settings.auth_failure_window_seconds, settings.auth_throttle_max_keys
    return AuthThrottle(
        by_client=FailureBudgets(limits, "client", settings.auth_failures_per_client, window,
                                 keys),
        by_address=FailureBudgets(limits, "address", settings.auth_failures_per_address,
                                  window, keys),
        refusal_delay=settings.auth_refusal_delay_seconds)
