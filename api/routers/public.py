"""Unauthenticated resources a relying party's software fetches by URL from certificates."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import ServicesDep
from api.openapi import problems
from jpki.errors import NotFound
from jpki.model import CaKind

router = APIRouter(tags=["public"])


@router.get("/healthz")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ca/{ca}/g{generation}.cer", response_class=Response,
            responses={200: {"content": {"application/pkix-cert": {}}}, **problems(404)})
def ca_certificate(ca: CaKind, generation: int, services: ServicesDep) -> Response:
    """RFC 5280 §4.2.2.1 caIssuers: the DER certificate, `application/pkix-cert`."""
    for gen in services.cas.generations():
        if gen.ca is ca and gen.generation == generation:
            return Response(gen.certificate_der, media_type="application/pkix-cert",
                            headers={"Cache-Control": "public, max-age=86400"})
    raise NotFound("no such CA generation")
