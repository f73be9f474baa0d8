"""`jpki crl publish`: full and delta CRLs of every shard, and ARLs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonOut,
    err,
    escape,
    fail,
    group,
    opened,
    out,
    print_json,
)

if TYPE_CHECKING:
    from rich.progress import Progress

app = group("Certificate revocation lists.")


@app.command("publish")
def crl_publish(
    shard: Annotated[list[str] | None, typer.Option(
        help="Only these shards (municipality codes, or arl); repeatable.")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Also copy the CRLs here as <ca>/gNN/<shard>.crl, -delta.crl, arl.crl.")
    ] = None,
    delta_only: Annotated[bool, typer.Option("--delta", help="Only delta CRLs.")] = False,
    every: Annotated[bool, typer.Option(
        "--all", help="Every shard, also those under which nothing was issued yet (by default "
        "only the shards that need a CRL: architecture §5.6).")] = False,
    workers: Annotated[int, typer.Option(help="Shards generated in parallel.")] = 4,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Generate, sign (in the HSM) and publish full and delta CRLs of the shards that need
    them, and ARLs."""
    import shutil
    from contextlib import nullcontext

    from api.crl_publishing import build_crl_publishing

    kinds = ("delta",) if delta_only else ("full", "delta")
    if out_dir is not None:
        _check_writable_dir(out_dir, as_json)
    # The CRL service alone (api.crl_publishing): a cron'd publication pays for nothing else.
    with opened(data_dir, as_json, build_crl_publishing) as services:
        scopes = services.crls.scopes(shard, every=every)
        total = sum(len(kinds) if not s.is_arl else (0 if delta_only else 1) for s in scopes)
        written: list[dict[str, Any]] = []
        progress = _progress_bar() if not as_json and total >= 20 else None
        with progress or nullcontext():
            task = progress.add_task("publishing CRLs", total=total) if progress else None

            def done(scope: Any, publication: Any) -> None:
                if progress is not None and task is not None:
                    progress.advance(task)
                path = services.crls.directory / publication.path
                entry = {"ca": scope.generation.ca.value, "generation": scope.generation.generation,
                         "scope": scope.name, "kind": publication.kind,
                         "number": publication.number, "entries": publication.entries,
                         "this_update": publication.this_update,
                         "next_update": publication.next_update, "sha256": publication.sha256,
                         "path": str(path)}
                if out_dir is not None:
                    from jpki.revocation.crls import file_name

                    target = (out_dir / scope.generation.ca.value /
                              f"g{scope.generation.generation:02d}" /
                              file_name(scope.name, publication.kind))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)
                    entry["path"] = str(target)
                written.append(entry)

            services.crls.publish_many(scopes, kinds=kinds, workers=workers, progress=done)
        written.sort(key=lambda e: (e["ca"], e["generation"], e["scope"], e["kind"]))
        if as_json:
            print_json({"written": written})
        else:
            for e in written:
                out.print(f"{e['ca']}/g{e['generation']:02d}/{e['scope']} {e['kind']} "
                          f"#{e['number']} {e['entries']} entries → {escape(e['path'])}")



def _progress_bar() -> Progress:
    # Imported only when shown: a scripted (--json) or small run does without rich.progress.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=err.console,
                    transient=True)


def _check_writable_dir(path: Path, as_json: bool) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".jpki-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        fail("output.unwritable", f"cannot write to {path}", as_json)
