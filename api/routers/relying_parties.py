"""Registration of relying parties (operator role, national: no municipality scope), and the
calls relying parties make (role rp; each scope-checked, rate-limited and audited). Who may
call which is the table of jpki.access.authz."""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from api import rp_calls
from api.deps import ServicesDep, authenticate, authorized, declare
from api.openapi import problems
from api.request_fields import RelyingPartyId
from api.schemas import (
    Basic4In,
    Basic4Out,
    LinkageIn,
    LinkageOut,
    PingOut,
    RelyingPartyCreatedOut,
    RelyingPartyIn,
    RelyingPartyOut,
    RelyingPartyStatusIn,
    RpClientOut,
    SecretRotationIn,
    SecretRotationOut,
    SignedIn,
    StatusIn,
    StatusOut,
    WithdrawalOut,
)
from jpki.access.authz import Grant, Operation
from jpki.access.principals import Principal
from jpki.model import ClientStatus
from jpki.protocol.cms import InvalidSignedData
from jpki.rate_limits import LeaseNeeded
from jpki.relying_parties.service import RelyingPartyView, RpContext

router = APIRouter(tags=["relying parties"])

P = TypeVar("P", bound=Operation)
Register = Annotated[Grant[Literal[Operation.RP_REGISTER]],
                     Depends(authorized(Operation.RP_REGISTER))]
Read = Annotated[Grant[Literal[Operation.RP_READ]], Depends(authorized(Operation.RP_READ))]
RotateSecret = Annotated[Grant[Literal[Operation.RP_ROTATE_SECRET]],
                         Depends(authorized(Operation.RP_ROTATE_SECRET))]
SetStatus = Annotated[Grant[Literal[Operation.RP_SET_STATUS]],
                      Depends(authorized(Operation.RP_SET_STATUS))]


def _utc(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text).astimezone(UTC) if text else None


def _rp_out(view: RelyingPartyView) -> RelyingPartyOut:
    return RelyingPartyOut(
        id=view.id, name=view.name, kind=view.kind, parent_id=view.parent_id,
        purposes=view.purposes, status=view.status,
        clients=[RpClientOut(client_id=str(c["client_id"]), status=str(c["status"]),
                             scopes=str(c["scopes"] or "").split(),
                             previous_secret_valid_until=_utc(c["previous_secret_valid_until"]))
                 for c in view.clients])


def _der(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSignedData(f"{what} must be base64") from exc


# --- registration (operators) ---------------------------------------------------------------


@router.post("/v1/operators/relying-parties", status_code=201,
             response_model=RelyingPartyCreatedOut, responses=problems(400, 404))
def register(body: RelyingPartyIn, grant: Register,
             services: ServicesDep) -> RelyingPartyCreatedOut:
    """Register a relying party and its first client; the secret is shown once."""
    new = services.relying_parties.register(grant, name=body.name, kind=body.kind,
                                            purposes=body.purposes, scopes=list(body.scopes),
                                            parent_id=body.parent_id)
    return RelyingPartyCreatedOut(relying_party=_rp_out(new.relying_party),
                                  client_id=new.client_id, client_secret=new.client_secret)


@router.get("/v1/operators/relying-parties", response_model=list[RelyingPartyOut])
def list_parties(grant: Read, services: ServicesDep) -> list[RelyingPartyOut]:
    return [_rp_out(v) for v in services.relying_parties.list_all(grant)]


@router.post("/v1/operators/relying-parties/{rp_id}/secret-rotations", status_code=201,
             response_model=SecretRotationOut, responses=problems(400, 404))
def rotate(rp_id: RelyingPartyId, body: SecretRotationIn, grant: RotateSecret,
           services: ServicesDep) -> SecretRotationOut:
    """A new client secret; the old one stays valid for ``overlap_seconds`` (default: the
    configured overlap)."""
    overlap = timedelta(seconds=body.overlap_seconds) if body.overlap_seconds is not None \
        else None
    rotated = services.relying_parties.rotate_secret(grant, rp_id, client_id=body.client_id,
                                                     overlap=overlap)
    return SecretRotationOut(client_id=rotated.client_id, client_secret=rotated.client_secret,
                             previous_valid_until=_utc(rotated.previous_valid_until))


@router.post("/v1/operators/relying-parties/{rp_id}/status", response_model=RelyingPartyOut,
             responses=problems(404))
def set_status(rp_id: RelyingPartyId, body: RelyingPartyStatusIn, grant: SetStatus,
               services: ServicesDep) -> RelyingPartyOut:
    """Suspend (refused at once, every client) or resume a relying party."""
    return _rp_out(services.relying_parties.set_status(grant, rp_id, ClientStatus(body.status)))


# --- the relying party's calls ----------------------------------------------------------------


def admitted(operation: P) -> Callable[..., Coroutine[Any, Any, RpContext[P]]]:
    """Authenticated, a relying party's client, registered and active, within its rate, and
    allowed ``operation`` (its scope) by the table of jpki.access.authz.

    Async: with the standing authentication read alongside the credentials, admission is a
    few comparisons and a token bucket, which need no thread of the pool."""

    async def dependency(request: Request,
                         principal: Annotated[Principal, Depends(authenticate)],
                         services: ServicesDep) -> RpContext[P]:
        standing = getattr(request.state, "rp_standing", None)
        ctx = None
        if standing is not None:
            with contextlib.suppress(LeaseNeeded):  # then admitted on a thread, below
                ctx = services.relying_parties.admit(principal, operation, standing,
                                                     lease=False)
        if ctx is None:  # the standing read here, or a block of tokens leased: on a thread
            ctx = await run_in_threadpool(services.relying_parties.admit, principal, operation,
                                          standing)
        request.state.relying_party = ctx.rp_id
        return ctx

    declare(dependency, operation)
    return dependency


def _purpose(request: Request, ctx: RpContext, purpose: str) -> str:
    if purpose in ctx.purposes:  # recorded with a refusal only when it is a declared code
        request.state.purpose = purpose
    return purpose


@router.get("/v1/rp/ping", response_model=PingOut)
async def ping(ctx: Annotated[RpContext[Literal[Operation.RP_PING]],
                              Depends(admitted(Operation.RP_PING))]) -> PingOut:
    """Authenticates and admits the caller, and nothing else (a liveness check, and the
    baseline of bench/relying_party.py). Not audited: it discloses nothing."""
    return PingOut(ok=True)


@router.post("/v1/status", response_model=StatusOut, responses=problems(
    400, 413, s413="The body is over the size limit, or the batch over 1,000 serials "
              "(`status.batch_too_large`)"))
async def status(body: StatusIn, request: Request,
                 ctx: Annotated[RpContext[Literal[Operation.RP_STATUS]],
                                Depends(admitted(Operation.RP_STATUS))],
                 services: ServicesDep) -> Response:
    """Up to 1,000 serials: good, revoked (with reason and time) or unknown, as OCSP answers,
    and whether each is a card or a mobile certificate."""
    answer = await rp_calls.status(services, ctx, _purpose(request, ctx, body.purpose),
                                   body.serials)
    return Response(rp_calls.status_json(answer), media_type="application/json")


@router.post("/v1/linkage", response_model=LinkageOut, responses=problems(400, 404, 409, 422))
def linkage(body: LinkageIn, request: Request,
            ctx: Annotated[RpContext[Literal[Operation.RP_LINKAGE]],
                           Depends(admitted(Operation.RP_LINKAGE))],
            services: ServicesDep) -> LinkageOut:
    """Old→new links, the current certificate and the signing↔auth sibling of a certificate
    the relying party has seen a valid signature from (``signed_data``) or holds a consent
    for (``consent_id``)."""
    purpose = _purpose(request, ctx, body.purpose)
    signed = _der(body.signed_data, "signed_data") if body.signed_data is not None else None
    answer = services.linkage.link(ctx, purpose, body.serial, signed_data=signed,
                                   consent_id=body.consent_id)
    return LinkageOut(serial=answer.serial, form=answer.form,
                      usage=answer.usage, status=answer.status,
                      successors=answer.successors, current_serial=answer.current_serial,
                      sibling=answer.sibling, current_sibling=answer.current_sibling)


@router.post("/v1/basic4", response_model=Basic4Out, response_model_exclude_none=True,
             responses=problems(400, 404, 409, 422))
async def basic4(body: Basic4In, request: Request,
                 ctx: Annotated[RpContext[Literal[Operation.RP_BASIC4]],
                                Depends(admitted(Operation.RP_BASIC4))],
                 services: ServicesDep) -> Basic4Out:
    """The consented items of the holder's latest basic 4 information and the serial of the
    holder's current signing certificate, under a consent the holder signed (``consent``,
    first call) or one submitted before (``consent_id``)."""
    purpose = _purpose(request, ctx, body.purpose)
    der = _der(body.consent, "consent") if body.consent is not None else None
    return rp_calls.basic4_out(await rp_calls.basic4(services, ctx, purpose, der,
                                                     body.consent_id))


@router.post("/v1/consents/withdrawals", response_model=WithdrawalOut,
             responses=problems(400, 404, 409, 422, 503))
def withdraw(body: SignedIn, services: ServicesDep) -> WithdrawalOut:
    """The holder withdraws a consent: a CMS SignedData over a
    ``jpki-rp-consent-withdrawal/1`` statement, signed with one of the holder's signing keys
    (no client credentials: the signature is the authorisation)."""
    consent = services.consents.withdraw(_der(body.signed_data, "signed_data"))
    assert consent.withdrawn_at is not None
    return WithdrawalOut(consent_id=consent.id,
                         withdrawn_at=consent.withdrawn_at.astimezone(UTC))
