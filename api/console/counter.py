"""The counter's issuance desk (窓口の交付): the identity-proofing guide, the delivery of a
station's certificates and their abandonment, and a new card in place of a lost one — each
through the same service and authorisation as the REST API, within the clerk's municipality.

The proofing guide asks the rule itself (jpki.registry.proofing.assess, through
CounterService.assess_proofing): which of patterns A–E the documents shown meet, or why none
does, for this resident today. It records nothing. Recording stays at the station
(PROOFING_RECORD is the counter stations'): a proofing record is bound to the station that
recorded it and consumed by that station's issuance, renewal or PIN reset
(jpki.lifecycle.proofing.check_proofing), so one recorded here could never be used. The guide
ends with the station's own ``--document``/``--measure`` options for what was accepted.

The guide is a GET form: it changes nothing (RFC 9110 §9.2.1), and its fields — document types,
measures, dates of receipts — are no personal data; the resident id is in the address as on the
resident's page. Everything that changes state is a POST with the session's CSRF token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams

from api.console.pages import render, signed_in, typed_date
from api.console.registry import resident_view
from jpki.access.authz import Operation, authorize
from jpki.access.console_accounts import SignIn
from jpki.errors import InvalidInput
from jpki.lifecycle.cards import CardSpec
from jpki.registry.proofing import (
    ALWAYS_PHOTO,
    Assessment,
    Document,
    DocumentClass,
    DocumentType,
    Evidence,
    Measure,
    Presence,
    document_class,
)
from jpki.serials import parse_serial

router = APIRouter(prefix="/console/counter", include_in_schema=False)

KOU = tuple(k for k in DocumentType if document_class(k) is DocumentClass.KOU)
OTSU = tuple(k for k in DocumentType if document_class(k) is DocumentClass.OTSU)
OTHER = tuple(k for k in DocumentType if document_class(k) is DocumentClass.OTHER)
# The documents whose date the rule reads: ※1 (運転経歴証明書 from 2012-04-01) and ※4
# (a receipt within 3 months).
DATED = frozenset({DocumentType.DRIVING_RECORD_CERTIFICATE, DocumentType.RECEIPT})
# How many of one 乙 type were shown, and whether one has the holder's photo (乙 types repeat
# legitimately: two qualification certificates, two passbooks).
OTSU_CHOICES = {"1": (1, False), "1p": (1, True), "2": (2, False), "2p": (2, True)}
PHOTO_CHOICES = {"1": (1, True)}  # a certified photo is 乙 with a photo by what it is


@dataclass(frozen=True)
class Side:
    """One person's part of the form: the applicant's (``a``) or the proxy's (``p``)."""

    prefix: str
    measures_prefix: str


APPLICANT, PROXY = Side("a", "m"), Side("p", "pm")


def otsu_choices(kind: DocumentType) -> tuple[str, ...]:
    return tuple(PHOTO_CHOICES if kind in ALWAYS_PHOTO else OTSU_CHOICES)


def _documents(params: QueryParams, side: Side) -> tuple[Document, ...]:
    documents: list[Document] = []
    for kind in DocumentType:
        key = f"{side.prefix}.{kind.value}"
        value = params.get(key, "")
        if not value:
            continue
        issued = params.get(f"{key}.date", "").strip()
        issued_on: date | None = typed_date(issued) if kind in DATED and issued else None
        if document_class(kind) is DocumentClass.OTSU:
            choices = PHOTO_CHOICES if kind in ALWAYS_PHOTO else OTSU_CHOICES
            if value not in choices:
                raise InvalidInput("not a number of documents the form offers", field=key)
            count, photo = choices[value]
            documents += [Document(kind, has_photo=photo and i == 0) for i in range(count)]
        else:
            if value != "1":
                raise InvalidInput("a document is ticked or not", field=key)
            documents.append(Document(kind, issued_on=issued_on))
    return tuple(documents)


def _measures(params: QueryParams, side: Side) -> frozenset[Measure]:
    return frozenset(m for m in Measure if params.get(f"{side.measures_prefix}.{m.value}") == "1")


def evidence_of(params: QueryParams) -> Evidence:
    """The documents and facts ticked on the guide's form, as the rule takes them."""
    presence = params.get("presence", Presence.IN_PERSON.value)
    if presence not in {p.value for p in Presence}:
        raise InvalidInput("in person or a proxy")
    return Evidence(
        presence=Presence(presence), applicant_documents=_documents(params, APPLICANT),
        measures=_measures(params, APPLICANT), proxy_documents=_documents(params, PROXY),
        proxy_measures=_measures(params, PROXY),
        delegation_letter=params.get("delegation_letter") == "1",
        hardship_proof=params.get("hardship_proof") == "1",
        applicant_in_facility=params.get("applicant_in_facility") == "1")


def station_options(evidence: Evidence) -> list[str]:
    """The station's options for accepted in-person evidence (devices/station/cli.py:
    ``--document kind[:photo][:YYYY-MM-DD]``, ``--measure``)."""
    options = []
    for doc in evidence.applicant_documents:
        text = doc.kind.value + (":photo" if doc.has_photo else "")
        if doc.issued_on is not None:
            text += f":{doc.issued_on.isoformat()}"
        options.append(f"--document {text}")
    return options + [f"--measure {m.value}" for m in sorted(evidence.measures)]


@router.get("/proofing")
async def proofing_guide(request: Request) -> Response:
    """The guide: tick what the person at the window shows; ``check`` asks the rule."""

    async def page(request: Request, session: SignIn) -> Response:
        principal = session.user.principal
        services = request.app.state.services
        params = request.query_params
        resident_id = params.get("id", "").strip()[:64]
        read = authorize(principal, Operation.RESIDENT_READ)
        basic4 = authorize(principal, Operation.RESIDENT_BASIC4_READ)
        resident = await run_in_threadpool(services.residents.get, read, resident_id)
        basic4.require_municipality(resident.municipality_code)
        verdict: Assessment | None = None
        refused_key: str | None = None
        evidence: Evidence | None = None
        if params.get("check"):
            try:
                evidence = evidence_of(params)
                verdict = await run_in_threadpool(services.counter.assess_proofing, read,
                                                  resident.id, evidence)
            except InvalidInput as exc:
                # A date typed wrong, or proxy documents ticked for a person in person: said
                # on the guide itself, with what was ticked kept.
                refused_key = {"date": "proof.bad_date", "presence": "proof.proxy_in_person"
                               }.get(str(exc.context.get("field")), "error.invalid")
        return render(request, "proofing.html", 422 if refused_key else 200, session=session,
                      resident=resident, params=params, kou=KOU, otsu=OTSU, other_kinds=OTHER,
                      dated=DATED, otsu_choices=otsu_choices, measures=list(Measure),
                      verdict=verdict, refused_key=refused_key,
                      station=station_options(evidence) if verdict and verdict.pattern
                      and evidence and evidence.presence is Presence.IN_PERSON else None)

    return await signed_in(request, page)


async def _resident_page(request: Request, session: SignIn, resident_id: str,
                         **extra: Any) -> Response:
    read = authorize(session.user.principal, Operation.RESIDENT_READ)
    resident = await run_in_threadpool(request.app.state.services.residents.get, read,
                                       resident_id)
    return await resident_view(request, session, resident, **extra)


async def _certificate_of(request: Request, session: SignIn) -> tuple[str, str]:
    """The form's certificate, read through the clerk's own CERTIFICATE_READ (their
    municipality): its canonical serial and its resident."""
    serial = parse_serial(request.state.form.get("serial", ""))
    view = await run_in_threadpool(request.app.state.services.certificates.show,
                                   authorize(session.user.principal,
                                             Operation.CERTIFICATE_READ), serial)
    return view.serial, view.resident_id


@router.post("/delivery")
async def confirm_delivery(request: Request) -> Response:
    """The card holds the certificate — as POST /v1/stations/certificates/{serial}/delivery,
    for when the station's own confirmation never came (architecture §3.5)."""

    async def page(request: Request, session: SignIn) -> Response:
        serial, resident_id = await _certificate_of(request, session)
        grant = authorize(session.user.principal, Operation.DELIVERY_CONFIRM)
        await run_in_threadpool(request.app.state.services.counter.confirm_delivery, grant,
                                serial)
        return await _resident_page(request, session, resident_id, delivered_serial=serial)

    return await signed_in(request, page, form_post=True)


@router.post("/abandonment")
async def abandon_delivery(request: Request) -> Response:
    """The card never got it: revoked as "destroyed before delivery" — as
    POST /v1/stations/certificates/{serial}/abandonment."""

    async def page(request: Request, session: SignIn) -> Response:
        serial, resident_id = await _certificate_of(request, session)
        grant = authorize(session.user.principal, Operation.DELIVERY_ABANDON)
        await run_in_threadpool(request.app.state.services.counter.abandon_delivery, grant,
                                serial)
        return await _resident_page(request, session, resident_id, abandoned_serial=serial)

    return await signed_in(request, page, form_post=True)


@router.post("/card")
async def new_card(request: Request) -> Response:
    """A new card in place of a lost (or a damaged) one — as POST /v1/operators/cards: the old
    card's certificates revoked as superseded, a hold made permanent (architecture §4.3)."""

    async def page(request: Request, session: SignIn) -> Response:
        form = request.state.form
        expires = form.get("expires_on", "").strip()
        spec = CardSpec(number=form.get("number", "").strip() or None,
                        expires_on=typed_date(expires) if expires else None)
        grant = authorize(session.user.principal, Operation.CARD_REGISTER)
        outcome = await run_in_threadpool(request.app.state.services.cards.register, grant,
                                          form.get("resident_id", ""), spec)
        return await _resident_page(request, session, outcome.card.resident_id,
                                    card_replaced=True, revoked=len(outcome.revocations))

    return await signed_in(request, page, form_post=True)
