"""``jpki municipality …``: the municipality registry — list, add, rename, merge (architecture
§5.6). The local operator acts as a national operator (jpki.access.authz)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonOut,
    escape,
    grant,
    group,
    open_services,
    out,
    print_json,
)
from jpki.access.authz import Operation

if TYPE_CHECKING:
    from jpki.registry.municipalities import MunicipalityView

app = group("The municipality registry: list, add, rename, merge (市町村合併).")

Code = Annotated[str, typer.Argument(help="全国地方公共団体コード, 6 digits with the check digit.")]
NameJa = Annotated[str | None, typer.Option(
    "--name-ja", help="The name in Japanese, ending in 市, 区, 町 or 村 (a ward after a space).")]
NameKana = Annotated[str | None, typer.Option("--name-kana", help="The reading, in hiragana.")]
NameRomaji = Annotated[str | None, typer.Option(
    "--name-romaji", help="The romaji certificates carry (subject and CRL distribution point).")]


def _data(view: MunicipalityView) -> dict[str, Any]:
    m = view.municipality
    return {"code": m.code, "name_ja": m.name_ja, "name_kana": m.name_kana,
            "name_romaji": m.name_romaji, "prefecture": m.prefecture.name_romaji,
            "status": m.status.value, "merged_into": m.merged_into, "shard": m.shard,
            "residents": view.residents,
            "shards": [{"name": s.name, "prefecture_romaji": s.prefecture_romaji,
                        "city_romaji": s.city_romaji, "closed_at": s.closed_at}
                       for s in view.shards]}


def _show(view: MunicipalityView) -> None:
    m = view.municipality
    status = f"merged into {m.merged_into}" if m.merged_into else m.status.value
    out.print(f"{m.code} {escape(m.name_ja)} {escape(m.name_romaji)} "
              f"({escape(m.prefecture.name_romaji)}) {status}, shard {m.shard}"
              + (f", {view.residents} residents" if view.residents is not None else ""))
    for s in view.shards:
        if s.name != m.shard or s.closed_at is not None:
            out.print(f"  shard {s.name} {escape(s.city_romaji)}"
                      + (f", closed {s.closed_at.isoformat()}" if s.closed_at else ""))


@app.command("list")
def municipality_list(
    prefecture: Annotated[str | None, typer.Option(
        help="Only this prefecture (JIS X 0401 code, e.g. 13).")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """List the registered municipalities (merged ones too) with their CRL shards."""
    with open_services(data_dir, as_json) as services:
        views = [v for v in services.municipalities.list(grant(Operation.MUNICIPALITY_READ))
                 if prefecture is None or v.municipality.code.startswith(prefecture)]
        if as_json:
            print_json({"municipalities": [_data(v) for v in views]})
            return
        for view in views:
            _show(view)


@app.command("add")
def municipality_add(
    code: Code,
    name_ja: Annotated[str, typer.Option("--name-ja", help="The name in Japanese, ending in 市, "
                                         "区, 町 or 村 (a ward after a space).")],
    name_kana: NameKana = None,
    name_romaji: NameRomaji = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Register a municipality; without --name-romaji, the romaji is derived from the
    reading."""
    with open_services(data_dir, as_json) as services:
        view = services.municipalities.add(grant(Operation.MUNICIPALITY_ADD), code, name_ja,
                                           name_kana=name_kana, name_romaji=name_romaji)
        if as_json:
            print_json(_data(view))
            return
        _show(view)


@app.command("rename")
def municipality_rename(
    code: Code,
    name_ja: NameJa = None,
    name_kana: NameKana = None,
    name_romaji: NameRomaji = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """A new name for future certificates; a new romaji opens a new CRL shard, and certificates
    already issued keep the distribution point they name."""
    with open_services(data_dir, as_json) as services:
        renamed = services.municipalities.rename(
            grant(Operation.MUNICIPALITY_RENAME), code, name_ja=name_ja, name_kana=name_kana,
            name_romaji=name_romaji)
        if as_json:
            print_json({"municipality": _data(renamed.view),
                        "previous_shard": renamed.previous_shard, "shard": renamed.shard})
            return
        _show(renamed.view)
        if renamed.shard != renamed.previous_shard:
            out.print(f"new certificates: shard {renamed.shard}; shard "
                      f"{renamed.previous_shard} stays published while its certificates are "
                      "valid")


@app.command("merge")
def municipality_merge(
    code: Code,
    into: Annotated[str, typer.Option(help="The municipality its residents move to.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Merge a municipality into another (市町村合併): its residents move; its CRL shard stays
    published while a certificate issued under it is valid."""
    with open_services(data_dir, as_json) as services:
        merged = services.municipalities.merge(grant(Operation.MUNICIPALITY_MERGE), code,
                                               into=into)
        if as_json:
            print_json({"merged": _data(merged.merged), "into": _data(merged.into),
                        "residents_moved": merged.residents_moved,
                        "closed_shard": merged.closed_shard})
            return
        _show(merged.merged)
        out.print(f"{merged.residents_moved} residents moved to {into}; shard "
                  f"{merged.closed_shard} closed")
