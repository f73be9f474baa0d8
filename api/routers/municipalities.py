"""The municipality registry (national operators; the table of jpki.access.authz): list, add,
rename and merge (市町村合併). Architecture §5.6 says what each does to CRL shards."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path

from api.deps import ServicesDep, authorized
from api.openapi import problems
from api.request_fields import PREFECTURE_PATTERN, Documented
from api.schemas import (
    CrlShardOut,
    MunicipalityIn,
    MunicipalityMergedOut,
    MunicipalityMergeIn,
    MunicipalityOut,
    MunicipalityRenamedOut,
    MunicipalityRenameIn,
)
from jpki.access.authz import Grant, Operation
from jpki.model import CaKind
from jpki.registry.municipalities import MunicipalityView
from jpki.urls import ServiceUrls

router = APIRouter(prefix="/v1/operators/municipalities", tags=["municipalities"])

Read = Annotated[Grant[Literal[Operation.MUNICIPALITY_READ]],
                 Depends(authorized(Operation.MUNICIPALITY_READ))]
Add = Annotated[Grant[Literal[Operation.MUNICIPALITY_ADD]],
                Depends(authorized(Operation.MUNICIPALITY_ADD))]
Rename = Annotated[Grant[Literal[Operation.MUNICIPALITY_RENAME]],
                   Depends(authorized(Operation.MUNICIPALITY_RENAME))]
Merge = Annotated[Grant[Literal[Operation.MUNICIPALITY_MERGE]],
                  Depends(authorized(Operation.MUNICIPALITY_MERGE))]
# Plain text to the service, which checks the check digit too (400 municipality.invalid).
Code = Annotated[str, Path(examples=["132217"], max_length=6),
                 Documented.of(pattern=PREFECTURE_PATTERN)]


def municipality_out(view: MunicipalityView, urls: ServiceUrls,
                     generation: int) -> MunicipalityOut:
    m = view.municipality
    return MunicipalityOut(
        code=m.code, name_ja=m.name_ja, name_kana=m.name_kana, name_romaji=m.name_romaji,
        prefecture=m.prefecture.name_romaji, status=m.status.value, merged_into=m.merged_into,
        shard=m.shard, residents=view.residents,
        shards=[CrlShardOut(name=s.name, prefecture_romaji=s.prefecture_romaji,
                            city_romaji=s.city_romaji, closed_at=s.closed_at,
                            crl_url=urls.crl(CaKind.SIGN, generation, s.name))
                for s in view.shards])


def _generation(services: ServicesDep) -> int:
    with services.uow() as uow:
        current = uow.cas.current(CaKind.SIGN)
    return current.generation if current is not None else 1


@router.get("", response_model=list[MunicipalityOut])
def list_municipalities(grant: Read, services: ServicesDep) -> list[MunicipalityOut]:
    """Every registered municipality, merged ones included, with its CRL shards."""
    generation = _generation(services)
    return [municipality_out(v, services.urls, generation)
            for v in services.municipalities.list(grant)]


@router.get("/{code}", response_model=MunicipalityOut, responses=problems(400, 404))
def get_municipality(code: Code, grant: Read, services: ServicesDep) -> MunicipalityOut:
    return municipality_out(services.municipalities.get(grant, code), services.urls,
                            _generation(services))


@router.post("", status_code=201, response_model=MunicipalityOut, responses=problems(400, 409))
def add_municipality(body: MunicipalityIn, grant: Add, services: ServicesDep) -> MunicipalityOut:
    """Register a municipality; its code's check digit is verified."""
    view = services.municipalities.add(grant, body.code, body.name_ja, name_kana=body.name_kana,
                                       name_romaji=body.name_romaji)
    return municipality_out(view, services.urls, _generation(services))


@router.post("/{code}/rename", response_model=MunicipalityRenamedOut,
             responses=problems(400, 404, 409))
def rename_municipality(code: Code, body: MunicipalityRenameIn, grant: Rename,
                        services: ServicesDep) -> MunicipalityRenamedOut:
    """A new name for future certificates; a new romaji opens a new CRL shard."""
    renamed = services.municipalities.rename(grant, code, name_ja=body.name_ja,
                                             name_kana=body.name_kana,
                                             name_romaji=body.name_romaji)
    return MunicipalityRenamedOut(
        municipality=municipality_out(renamed.view, services.urls, _generation(services)),
        previous_shard=renamed.previous_shard, shard=renamed.shard)


@router.post("/{code}/merge", response_model=MunicipalityMergedOut,
             responses=problems(400, 404, 409))
def merge_municipality(code: Code, body: MunicipalityMergeIn, grant: Merge,
                       services: ServicesDep) -> MunicipalityMergedOut:
    """Merge into another (市町村合併): the residents move; the CRL shard stays published while
    a certificate issued under it is unexpired."""
    merged = services.municipalities.merge(grant, code, into=body.into)
    generation = _generation(services)
    return MunicipalityMergedOut(
        merged=municipality_out(merged.merged, services.urls, generation),
        into=municipality_out(merged.into, services.urls, generation),
        residents_moved=merged.residents_moved, closed_shard=merged.closed_shard)
