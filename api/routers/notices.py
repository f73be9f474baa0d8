"""Notices to holders over HTTP: the expiry notices' list (有効期限通知書) of one municipality,
streamed as CSV or JSON (jpki.registry.expiry_notices)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import ServicesDep, authorized
from api.openapi import problems
from jpki.access.authz import Grant, Operation
from jpki.errors import InvalidInput
from jpki.registry.expiry_notices import as_csv, as_json

router = APIRouter(tags=["notices"])

ExpiryNotices = Annotated[Grant[Literal[Operation.EXPIRY_NOTICES]],
                          Depends(authorized(Operation.EXPIRY_NOTICES))]
_PARAMETERS = frozenset({"municipality", "from", "to", "format"})
_MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def _strict(request: Request) -> None:
    """Strict: a parameter not defined, or given twice, is refused rather than ignored (a
    typo in ``from`` must not silently widen or narrow a mailing list)."""
    for name in request.query_params:
        if name not in _PARAMETERS:
            raise InvalidInput("unknown query parameter", field=name[:64])
        if len(request.query_params.getlist(name)) > 1:
            raise InvalidInput("query parameter given more than once", field=name)


def _encoded(chunks: Iterator[str]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk.encode("utf-8")


@router.get(
    "/v1/operators/notices/expiry", response_class=StreamingResponse,
    responses={**problems(400, 404, 422), 200: {"content": {
        "text/csv": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "object"}}},
        "description": "One row per holder: resident_id, name, address, address_withheld, "
                       "expires_on, certificates."}})
def expiry_notices(
    request: Request, services: ServicesDep, grant: ExpiryNotices,
    municipality: Annotated[str, Query(pattern=r"^[0-9]{6}$", description="6-digit code")],
    start: Annotated[date, Query(alias="from", description="first JST date, included")],
    end: Annotated[date, Query(alias="to", description="JST date ending the window, excluded")],
    fmt: Annotated[Literal["csv", "json"], Query(alias="format")] = "csv",
) -> StreamingResponse:
    """The holders of ``municipality`` whose card certificates (signing or auth) expire in
    ``[from, to)`` (JST dates; at most 366 days), for the expiry notices (有効期限通知書): one
    row per holder with the name and address to write to, the earliest expiry date and the
    kinds that expire. The municipality's own operators and national operators only; the
    address of a resident under DV support measures only to the municipality's own. Every
    export is audited (counts only) before the first row is sent."""
    _strict(request)
    export = services.expiry_notices.export(grant, municipality, start, end, fmt)
    chunks = as_json(export) if fmt == "json" else as_csv(export.notices)
    name = f"expiry-notices-{municipality}-{start.isoformat()}-{end.isoformat()}.{fmt}"
    return StreamingResponse(_encoded(chunks), media_type=_MEDIA_TYPES[fmt], headers={
        "Cache-Control": "no-store", "Content-Disposition": f'attachment; filename="{name}"',
        "JPKI-Notice-Count": str(export.count)})
