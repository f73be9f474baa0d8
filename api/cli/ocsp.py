"""`jpki ocsp …`: the OCSP responder's pre-signed responses."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonOut,
    fail,
    group,
    open_services,
    out,
    print_json,
)

app = group("The OCSP responder's pre-signed responses.")


@app.command("presign")
def ocsp_presign(
    algorithm: Annotated[str, typer.Option(help="CertID hash: sha1 (RFC 5019) or sha256.")
                         ] = "sha1",
    limit: Annotated[int | None, typer.Option(help="At most this many certificates.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Sign OCSP responses ahead of time for every issued certificate that has none fresh."""
    if algorithm not in ("sha1", "sha256"):
        fail("request.invalid", "--algorithm is sha1 or sha256", as_json)
    with open_services(data_dir, as_json) as services:
        count = services.ocsp.presign_missing(algorithm, limit=limit)
        print_json({"signed": count}) if as_json else out.print(
            f"signed {count} OCSP response(s) ahead of time")


@app.command("verify")
def ocsp_verify(
    check_only: Annotated[bool, typer.Option(
        "--check-only", help="Report only; re-sign nothing, and exit non-zero on a finding.")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Compare every stored OCSP response with the store (status, revocation time and reason,
    CertID, signature) and re-sign each that contradicts it."""
    with open_services(data_dir, as_json) as services:
        check = services.ocsp.verify_stored(repair=not check_only)
    findings = [{"serial": f.serial, "hash_algorithm": f.hash_algorithm,
                 "ca_generation_id": f.ca_generation_id, "why": f.why} for f in check.findings]
    if check_only and check.contradicted:
        fail("ocsp.responses_contradict_store",
             f"{check.contradicted} of {check.checked} stored OCSP response(s) contradict the "
             "store: run `jpki ocsp verify` without --check-only to re-sign them"
             + "".join(f"; {f['serial']} ({f['hash_algorithm']}): {f['why']}"
                       for f in findings[:5]), as_json)
    if as_json:
        print_json({"checked": check.checked, "expired": check.expired,
                    "contradicted": check.contradicted, "resigned": check.resigned,
                    "findings": findings})
        return
    out.print(f"checked {check.checked} stored OCSP response(s) ({check.expired} expired, "
              f"skipped): {check.contradicted} contradicted the store, {check.resigned} "
              "re-signed")
    for f in findings:
        out.print(f"  {f['serial']} ({f['hash_algorithm']}, generation "
                  f"{f['ca_generation_id']}): {f['why']}")
