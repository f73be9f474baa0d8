"""The CA's REST API as the holder app and the kiosk use it for the signing-password reset
(architecture §7.1): HTTP Basic with the device's client credentials; refusals (RFC 9457
problems) raised as :class:`ResetRefused` with the CA's stable code."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from devices.ca_http import CaConnection
from jpki.errors import JpkiError


class ResetRefused(JpkiError):
    """The CA answered with a problem; ``ca_code`` is the CA's stable code."""

    code = "reset.ca_refused"
    title = "The CA refused the request"

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail, status=status, ca_code=code)
        self.status = status
        self.ca_code = code


class ResetCaUnreachable(JpkiError):
    code = "reset.ca_unreachable"
    title = "The CA cannot be reached"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class ResetCa(CaConnection):
    def call(self, path: str, json: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST ``path``; the JSON answer ({} for 204), or ResetRefused / ResetCaUnreachable."""
        try:
            response = self._http.post(path, json=json, auth=self._auth)
        except httpx.HTTPError as exc:
            raise ResetCaUnreachable(f"cannot reach the CA: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                code, detail = str(body.get("code", "")), str(body.get("detail", ""))
            except ValueError:
                code, detail = f"http.{response.status_code}", "no problem document"
            raise ResetRefused(response.status_code, code, detail)
        if response.status_code == 204:
            return {}
        return dict(response.json())

    def challenge(self, path: str) -> bytes:
        return base64.b64decode(self.call(path)["challenge"])
