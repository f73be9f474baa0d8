"""Request dependencies: the services, and who is calling (authenticated on every request)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from api.composition import Services
from jpki.errors import BadCredentials, Unauthenticated
from jpki.model import ClientRole
from jpki.principals import Principal


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def authenticate(request: Request, services: ServicesDep) -> Principal:
    """HTTP Basic (RFC 7617) with the client id and secret `jpki client add` printed."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("send the client id and secret with HTTP Basic authentication")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        raise BadCredentials("only HTTP Basic authentication is accepted")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise BadCredentials("malformed Basic credentials") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id or not secret:
        raise BadCredentials("malformed Basic credentials")
    principal = services.clients.authenticate(client_id, secret)
    request.state.principal = principal
    return principal


def require(*roles: ClientRole) -> Callable[..., Principal]:
    """A dependency that authenticates and then checks the caller's role."""

    def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        principal.require_role(*roles)
        return principal

    return dependency


OperatorDep = Annotated[Principal, Depends(require(ClientRole.OPERATOR))]
StationDep = Annotated[Principal, Depends(require(ClientRole.STATION))]
CallCentreDep = Annotated[Principal, Depends(require(ClientRole.CALLCENTER))]
ReaderDep = Annotated[Principal, Depends(require(ClientRole.OPERATOR, ClientRole.STATION))]
