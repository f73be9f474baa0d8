"""The CA's REST API as the station uses it (HTTP Basic with the station's client credentials).

Refusals arrive as RFC 9457 problems; they are raised as :class:`CaRefused` carrying the stable
``code`` so the workflow (and its operator) can act on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from cryptography import x509

from devices.ca_http import CaConnection
from jpki.errors import JpkiError


class CaRefused(JpkiError):
    """The CA answered with a problem; ``code`` is the CA's."""

    code = "station.ca_refused"
    title = "The CA refused the request"

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail, status=status, ca_code=code)
        self.status = status
        self.ca_code = code


class CaUnreachable(JpkiError):
    code = "station.ca_unreachable"
    title = "The CA cannot be reached"


@dataclass(frozen=True)
class IssuedPair:
    card_number: str
    certificates: dict[str, dict[str, Any]]  # kind → certificate JSON (serial, pem, …)


class CaClient(CaConnection):
    def _call(self, method: str, path: str, json: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=json, auth=self._auth)
        except httpx.HTTPError as exc:
            raise CaUnreachable(f"cannot reach the CA: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                code, detail = str(body.get("code", "")), str(body.get("detail", ""))
            except ValueError:
                code, detail = f"http.{response.status_code}", "no problem document"
            raise CaRefused(response.status_code, code, detail)
        return response.json()

    def resident(self, resident_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/operators/residents/{resident_id}"))

    def record_proofing(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/stations/proofings", body))

    def issue(self, resident_id: str, proofing_id: str, *, sign_pem: str | None,
              auth_pem: str | None, card: dict[str, Any] | None = None,
              renewal: bool = False) -> IssuedPair:
        body: dict[str, Any] = {"resident_id": resident_id, "proofing_id": proofing_id}
        if sign_pem:
            body["sign_public_key"] = sign_pem
        if auth_pem:
            body["auth_public_key"] = auth_pem
        if card:
            body["card"] = card
        path = "/v1/stations/renewals" if renewal else "/v1/stations/certificates"
        doc = self._call("POST", path, body)
        return IssuedPair(card_number=doc["card_number"],
                          certificates={c["kind"]: c for c in doc["certificates"]})

    def confirm_delivery(self, serial: str) -> None:
        self._call("POST", f"/v1/stations/certificates/{serial}/delivery")

    def abandon(self, serial: str) -> None:
        self._call("POST", f"/v1/stations/certificates/{serial}/abandonment")

    def authorise_pin_reset(self, resident_id: str, pin: str, proofing_id: str) -> None:
        self._call("POST", "/v1/stations/pin-resets",
                   {"resident_id": resident_id, "pin": pin, "proofing_id": proofing_id})

    def claim_task(self) -> dict[str, Any] | None:
        """This station's oldest queued task, claimed (jpki.registry.station_tasks); None
        when none waits."""
        try:
            response = self._http.post("/v1/stations/task-claims", auth=self._auth)
        except httpx.HTTPError as exc:
            raise CaUnreachable(f"cannot reach the CA: {type(exc).__name__}") from exc
        if response.status_code == 204:
            return None
        if response.status_code >= 400:
            body = response.json() if response.headers.get("content-type", "").endswith(
                "json") else {}
            raise CaRefused(response.status_code, str(body.get("code", "")),
                            str(body.get("detail", "")))
        return dict(response.json())

    def report_task(self, task_id: str, step: str, *, outcome: str = "running",
                    error_code: str | None = None,
                    serials: dict[str, str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"step": step, "outcome": outcome}
        if error_code is not None:
            body["error_code"] = error_code
        if serials:
            body["serials"] = serials
        return dict(self._call("POST", f"/v1/stations/tasks/{task_id}/reports", body))

    def certificate(self, serial: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/certificates/{serial}"))

    def ca_certificate(self, url: str) -> x509.Certificate:
        """The issuer certificate named by a certificate's caIssuers URL (public, DER)."""
        try:
            response = self._http.get(url)
        except httpx.HTTPError as exc:
            raise CaUnreachable(f"cannot fetch the CA certificate: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise CaRefused(response.status_code, f"http.{response.status_code}",
                            "the CA certificate could not be fetched")
        return x509.load_der_x509_certificate(response.content)
