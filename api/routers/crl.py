"""CRLs over HTTP: static bytes with the caching headers any HTTP cache or CDN understands.

``/crl/{ca}/g{NN}/{shard}.crl`` (full), ``…/{shard}-delta.crl`` (delta), ``…/arl.crl``:
``application/pkix-crl`` (RFC 5280 §4.2.1.13, RFC 2585), ETag = SHA-256 of the bytes,
Last-Modified = thisUpdate, Cache-Control max-age up to nextUpdate; If-None-Match → 304.
A known scope not yet published is published on its first request (a shard under which nothing
was issued yet has no CRL file until then: architecture §5.6); an unknown one is 404.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ServicesDep
from api.openapi import problems
from api.request_fields import Documented
from jpki.errors import NotFound
from jpki.model import CaKind
from jpki.revocation.crls import parse_file_name

router = APIRouter(tags=["revocation"])

# Plain text to the route, which answers 404 for anything that is not a CRL it publishes; the
# document says which names those are (jpki.revocation.crls.file_name), with a published one as
# example.
CrlCa = Annotated[str, Path(examples=["sign"]),
                  Documented.of(pattern="^(?:" + "|".join(k.value for k in CaKind) + ")$")]
CrlGeneration = Annotated[str, Path(examples=["1"]), Documented.of(pattern=r"^[0-9]{1,4}$")]
CrlName = Annotated[str, Path(examples=["arl.crl"]),
                    Documented.of(pattern=r"^(?:arl|[0-9]{6}(?:-[1-9][0-9]{0,2})?(?:-delta)?)"
                                          r"\.crl$",
                                  description="`arl.crl`, or a shard: a municipality code, "
                                              "`-2`, `-3`… after a rename: `132217.crl` "
                                              "(full), `132217-delta.crl`, `132217-2.crl`")]


def _http_date(at: datetime) -> str:
    return format_datetime(at, usegmt=True)


@router.get("/crl/{ca}/g{generation}/{name}", response_class=Response,
            responses={200: {"content": {"application/pkix-crl": {}}},
                       304: {"description": "Not modified since the `If-None-Match` ETag"},
                       **problems(404, 503)})
async def get_crl(ca: CrlCa, generation: CrlGeneration, name: CrlName, request: Request,
                  services: ServicesDep) -> Response:
    # Anything that is not a CRL we publish is a plain 404, whatever part of the path is off.
    # ASCII digits only: str.isdigit() also takes other scripts' digits, which int() reads.
    if ca not in {k.value for k in CaKind} or not (generation.isascii() and generation.isdigit()) \
            or len(generation) > 4:
        raise NotFound("no such CRL")
    scope_name, kind = parse_file_name(name)
    scope = await run_in_threadpool(services.crls.scope, CaKind(ca), int(generation), scope_name)
    publication = await run_in_threadpool(services.crls.ensure_published, scope, kind)
    path = services.crls.directory / publication.path
    if not path.is_file():  # pragma: no cover - removed behind our back
        raise NotFound("the CRL file is missing")
    now = services.clock.now()
    max_age = max(0, int((publication.next_update - now).total_seconds()))
    etag = f'"{publication.sha256}"'
    headers = {
        "ETag": etag,
        "Last-Modified": _http_date(publication.this_update),
        "Expires": _http_date(publication.next_update),
        "Cache-Control": f"public, max-age={max_age}, no-transform, must-revalidate",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return FileResponse(path, media_type="application/pkix-crl", headers=headers)
