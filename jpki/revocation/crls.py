"""CRL publication: sharded full CRLs, delta CRLs and ARLs per CA generation (RFC 5280 §5).

Scopes. Every end-entity certificate names its shard — its holder's municipality — in its CRL
distribution point (reference §1.2, §3.2), so each (CA generation, municipality) pair is one
CRL scope, generated independently and in parallel (Boulder's crl-updater, architecture §11
[B2]). Each generation also has an ARL: its root's distribution point is the CA's own DN (§1.1).

Per scope: one CRL-number sequence shared by full and delta CRLs (§5.2.3); full CRLs carry a
critical Issuing Distribution Point equal to the certificates' distribution point and a Freshest
CRL pointer to the delta; deltas carry the same IDP and a critical Delta CRL Indicator naming their
base, and list what changed since the base: new revocations, changed reasons, and removeFromCRL
for released holds (§5.2.4, §5.3.1).

Files are written under ``<data>/crl/<ca>/gNN/`` with the CRL number in the name, then recorded;
the HTTP endpoint serves the newest recorded one, so a reader never sees a half-written file.

Which scopes are published (architecture §5.6). A shard is a row of the registry
(jpki.municipalities.CrlShard) with its distribution-point name frozen. Of the ~3,800 (CA
generation, shard) pairs of a nation, only those that need a CRL are *live* and kept fresh by
the maintenance loop: a pair under which a certificate was ever issued (the ARL of each
generation always), or one published already. A closed shard (renamed or merged) stays live
while any certificate issued under it is within notAfter plus the grace CRLs keep entries for.
A pair nobody needs has no CRL file; its URL still answers a valid CRL: the first request
publishes it (:meth:`CrlService.ensure_published`), and the loop keeps it fresh from then on.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from jpki.authority.ca import CaService
from jpki.authority.profiles import shard_names
from jpki.authority.recipe import Recipe
from jpki.errors import NotFound
from jpki.lifecycle.crl_entries import remove_from_crl_entry
from jpki.model import CaGeneration, CaKind, CrlPublication
from jpki.municipalities import SHARD_PATTERN, CrlShard
from jpki.ports import Clock, CrlEntrySource, CrlUnitOfWorkFactory, KeyStore
from jpki.revocation.crl_writer import CrlPlan, WrittenCrl, write_crl
from jpki.telemetry import NO_TELEMETRY, Telemetry
from jpki.urls import ServiceUrls

ARL = "arl"
FULL = "full"
DELTA = "delta"
KEEP_FILES = 3  # older files of a scope are removed once newer ones are recorded


@dataclass(frozen=True)
class CrlScope:
    generation: CaGeneration
    name: str  # a shard's name (a municipality code, or code-N after a rename), or "arl"
    shard: CrlShard | None

    @property
    def is_arl(self) -> bool:
        return self.name == ARL

    @property
    def label(self) -> str:
        return f"{self.generation.ca.value}/g{self.generation.generation:02d}/{self.name}"


def file_name(scope: str, kind: str) -> str:
    """The URL file name of a scope's CRL: ``132217.crl``, ``132217-delta.crl``, ``arl.crl``."""
    return f"{scope}-delta.crl" if kind == DELTA else f"{scope}.crl"


def parse_file_name(name: str) -> tuple[str, str]:
    """(scope, kind) from a URL file name; NotFound for anything else."""
    if not name.endswith(".crl"):
        raise NotFound("no such CRL")
    stem = name[:-4]
    kind = FULL
    if stem.endswith("-delta"):
        stem, kind = stem[:-6], DELTA
    if stem == ARL and kind == FULL:
        return stem, kind
    if SHARD_PATTERN.fullmatch(stem):  # [0-9]: ASCII digits only, not other scripts'
        return stem, kind
    raise NotFound("no such CRL")


class CrlService:
    def __init__(self, uow_factory: CrlUnitOfWorkFactory, source: CrlEntrySource, keys: KeyStore,
                 clock: Clock, recipe: Recipe, urls: ServiceUrls, cas: CaService,
                 directory: Path) -> None:
        self._uow = uow_factory
        self._source = source
        self._keys = keys
        self._clock = clock
        self._recipe = recipe
        self._urls = urls
        self._cas = cas
        self.directory = directory
        # Set by the composition root (api.metrics.bind): how long each publication took.
        self.telemetry: Telemetry = NO_TELEMETRY
        self._first_lock = threading.Lock()
        self._first: dict[tuple[int, str], threading.Lock] = {}

    # --- scopes -------------------------------------------------------------------------

    def scopes(self, shards: list[str] | None = None, *, include_arl: bool = True,
               at: datetime | None = None, every: bool = False) -> list[CrlScope]:
        """The live scopes (module docstring) of every generation still within validity (plus
        grace), or — ``shards`` named — those shards' scopes, live or not; ``every``: every
        shard's, live or not (`jpki crl publish --all`)."""
        now = at or self._clock.now()
        floor = now - self._recipe.crl.expired_grace
        with self._uow() as uow:
            generations = [g for g in uow.cas.generations()
                           if g.not_after + self._recipe.crl.expired_grace >= now]
            known = {s.name: s for s in uow.crls.shards()}
            live = (uow.crls.live_scopes([g.id or 0 for g in generations], floor)
                    if shards is None else set())
        if every and shards is None:
            shards = list(known)
        if shards is not None:
            wanted = set(shards)
            unknown = wanted - set(known) - {ARL}
            if unknown:
                raise NotFound(f"no such shard: {', '.join(sorted(unknown))}")
            include_arl = include_arl and ARL in wanted
        out = []
        for gen in generations:
            names = sorted(wanted - {ARL}) if shards is not None else sorted(
                name for gid, name in live if gid == gen.id and name in known)
            out += [CrlScope(gen, name, known[name]) for name in names]
            if include_arl:
                out.append(CrlScope(gen, ARL, None))
        return out

    def scope(self, ca: CaKind, generation: int, name: str) -> CrlScope:
        with self._uow() as uow:
            gen = next((g for g in uow.cas.generations(ca) if g.generation == generation), None)
            if gen is None:
                raise NotFound("no such CA generation")
            if name == ARL:
                return CrlScope(gen, ARL, None)
            shard = uow.crls.shard(name)
        if shard is None:
            raise NotFound("no such shard")
        return CrlScope(gen, name, shard)

    def _idp(self, scope: CrlScope) -> x509.IssuingDistributionPoint:
        if scope.is_arl:
            # The roots' distribution point is the CA's own DN (§1.1): the ARL answers to it.
            subject = x509.load_der_x509_certificate(scope.generation.certificate_der).subject
            return x509.IssuingDistributionPoint(
                full_name=[x509.DirectoryName(subject)], relative_name=None,
                only_contains_user_certs=False, only_contains_ca_certs=True,
                only_some_reasons=None, indirect_crl=False, only_contains_attribute_certs=False)
        assert scope.shard is not None
        # The shard's frozen name: exactly what its certificates' distribution point says.
        return x509.IssuingDistributionPoint(
            full_name=shard_names(self._recipe, self._urls, scope.generation.ca,
                                  scope.generation.generation, scope.shard),
            relative_name=None, only_contains_user_certs=True, only_contains_ca_certs=False,
            only_some_reasons=None, indirect_crl=False, only_contains_attribute_certs=False)

    # --- publishing ---------------------------------------------------------------------

    def publish(self, scope: CrlScope, kind: str = FULL) -> CrlPublication:
        """Generate, sign, write and record one CRL of ``scope``."""
        started = time.perf_counter()
        gen = scope.generation
        gid = gen.id or 0
        issuer = self._cas.issuer_of(gen)
        crl = self._recipe.crl
        with self._uow() as uow:
            base = uow.crls.latest(gid, scope.name, FULL) if kind == DELTA else None
            number = uow.crls.next_number(gid, scope.name)
            uow.commit()
        if kind == DELTA and base is None:
            # A delta needs a base: publish the full CRL first.
            return self.publish(scope, FULL)
        with self._source.snapshot() as snap:
            now = self._clock.now()
            floor = now - crl.expired_grace
            interval = crl.delta_interval if kind == DELTA else crl.full_interval
            plan = CrlPlan(
                issuer=issuer, this_update=now, next_update=now + interval + crl.next_update_margin,
                number=number, idp=self._idp(scope),
                delta_base=base.number if base is not None else None,
                freshest_url=None if kind == DELTA or scope.is_arl else self._urls.crl_delta(
                    gen.ca, gen.generation, scope.name))
            key = self._keys.rsa_key(gen.key_label)
            entries: Iterator[bytes]
            if scope.is_arl:
                # No CA certificate is ever revoked by this service yet: the ARL is empty.
                count, length, entries = 0, 0, iter([])
            elif kind == FULL:
                count, length = snap.full_stats(gid, scope.name, now, floor)
                entries = snap.full_entries(gid, scope.name, now, floor)
            else:
                assert base is not None
                chunks = self._delta_entries(snap.delta(gid, scope.name, base.this_update, now,
                                                        floor))
                count, length, entries = len(chunks), sum(map(len, chunks)), iter(chunks)
            relative = Path(gen.ca.value) / f"g{gen.generation:02d}" / \
                f"{file_name(scope.name, kind)[:-4]}.{number}.crl"
            written = self._write(relative, plan, count, length, entries, key)
        publication = CrlPublication(
            id=None, ca_generation_id=gid, scope=scope.name, kind=kind, number=number,
            base_number=plan.delta_base, this_update=plan.this_update,
            next_update=plan.next_update, entries=written.entries, size=written.size,
            sha256=written.sha256, path=str(relative), created_at=self._clock.now())
        with self._uow() as uow:
            uow.crls.add(publication)
            stale = list(uow.crls.older_than(gid, scope.name, kind, KEEP_FILES))
            uow.commit()
        for old in stale:
            (self.directory / old.path).unlink(missing_ok=True)
        with contextlib.suppress(Exception):  # published: an observer's failure changes nothing
            self.telemetry.crl_published(gen.ca.value, gen.generation, publication,
                                         time.perf_counter() - started)
        return publication

    @staticmethod
    def _delta_entries(rows: list) -> list[bytes]:  # type: ignore[type-arg]
        out = []
        for row in rows:
            if row.revoked_at is not None and row.crl_entry is not None:
                out.append(bytes(row.crl_entry))
            elif row.hold_released_at is not None:
                # §5.3.1: a released hold is listed once more, as removeFromCRL.
                out.append(remove_from_crl_entry(row.serial, row.hold_released_at))
        return out

    def _write(self, relative: Path, plan: CrlPlan, count: int, length: int,
               entries: Iterator[bytes], key: object) -> WrittenCrl:
        target = self.directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as out:
                written = write_crl(plan, count, length, entries, key, out)  # type: ignore[arg-type]
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return written

    def publish_many(self, scopes: list[CrlScope], kinds: tuple[str, ...] = (FULL, DELTA),
                     workers: int = 4,
                     progress: Callable[[CrlScope, CrlPublication], None] | None = None,
                     ) -> list[CrlPublication]:
        """Publish scopes in parallel. Threads suffice: the heavy parts — the database cursor,
        hashing, file writes and the HSM signature — all release the GIL."""
        results: list[CrlPublication] = []

        def one(scope: CrlScope) -> list[CrlPublication]:
            return [self.publish(scope, kind) for kind in kinds
                    if not (scope.is_arl and kind == DELTA)]

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {pool.submit(one, scope): scope for scope in scopes}
            for future in as_completed(futures):
                for publication in future.result():
                    results.append(publication)
                    if progress is not None:
                        progress(futures[future], publication)
        return results

    # --- reading ------------------------------------------------------------------------

    def latest(self, scope: CrlScope, kind: str) -> CrlPublication | None:
        with self._uow() as uow:
            return uow.crls.latest(scope.generation.id or 0, scope.name, kind)

    def ensure_published(self, scope: CrlScope, kind: str) -> CrlPublication:
        """The newest CRL of ``scope`` and ``kind``, published now if there is none yet (a
        shard's first request, module docstring): one publication however many ask at once."""
        found = self.latest(scope, kind)
        if found is not None:
            return found
        # One lock per scope, not per kind: a validator asks for the full and the delta CRL at
        # once, and the delta's base is the full one.
        key = (scope.generation.id or 0, scope.name)
        with self._first_lock:
            lock = self._first.setdefault(key, threading.Lock())
        with lock:
            found = self.latest(scope, kind)
            if found is None:
                if kind == DELTA and self.latest(scope, FULL) is None:
                    self.publish(scope, FULL)  # a delta needs its base
                found = self.publish(scope, kind)
        with self._first_lock:
            self._first.pop(key, None)
        return found

    def due(self, at: datetime | None = None) -> list[tuple[CrlScope, str]]:
        """What the maintenance loop should publish now, of the live scopes: full CRLs older
        than the full interval (or missing), deltas older than the delta interval. Three
        statements whatever the number of scopes (the times are kept per scope in the store)."""
        now = at or self._clock.now()
        crl = self._recipe.crl
        scopes = self.scopes(at=now)
        with self._uow() as uow:
            times = uow.crls.scope_times()
        out = []
        for scope in scopes:
            full_at, delta_at = times.get((scope.generation.id or 0, scope.name), (None, None))
            if full_at is None or now - full_at >= crl.full_interval:
                out.append((scope, FULL))
                continue
            if scope.is_arl:
                continue
            if delta_at is None or now - delta_at >= crl.delta_interval:
                out.append((scope, DELTA))
        return out
