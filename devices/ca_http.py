"""The one HTTP connection a device keeps to the CA's REST API, authenticated with its client
credentials (HTTP Basic): the enrolment station's (devices.station.ca_client) and the holder
app's and kiosk's (devices.reset_ca) clients build their calls on it."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx


class CaConnection:
    def __init__(self, base_url: str, client_id: str, client_secret: str, *,
                 http: httpx.Client | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http or httpx.Client(base_url=self.base_url, timeout=timeout)
        self._auth = httpx.BasicAuth(client_id, client_secret)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
