"""The base URL written into certificates, derived from the address `jpki serve` listens on."""

from __future__ import annotations

from pathlib import Path

import pytest

from jpki.model import CaKind
from jpki.settings import DEFAULT_BASE_URL, Settings
from jpki.urls import ServiceUrls, reaches, served_base_url

ANY_IPV4 = "0.0.0.0"  # noqa: S104 - a bind address under test, nothing binds it here


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JPKI_BASE_URL", raising=False)


@pytest.mark.parametrize(("host", "port", "url"), [
    ("127.0.0.1", 9000, "http://127.0.0.1:9000"),
    ("localhost", 8000, "http://localhost:8000"),
    ("pki.example.jp", 8080, "http://pki.example.jp:8080"),
    ("::1", 9001, "http://[::1]:9001"),
    ("[::1]", 9001, "http://[::1]:9001"),
    # A wildcard is no host a client can use: loopback of the same family stands in.
    (ANY_IPV4, 8443, "http://127.0.0.1:8443"),
    ("::", 80, "http://[::1]:80"),
])
def test_served_base_url(host: str, port: int, url: str) -> None:
    assert served_base_url(host, port) == url


@pytest.mark.parametrize(("base_url", "host", "port", "expected"), [
    ("http://127.0.0.1:9000", "127.0.0.1", 9000, True),
    ("http://127.0.0.1:9000/", "127.0.0.1", 9000, True),
    ("http://localhost:9000", "127.0.0.1", 9000, True),  # loopback names are one
    ("http://[::1]:9000", "localhost", 9000, True),
    ("http://pki.example.jp:9000", ANY_IPV4, 9000, True),  # every address: only the port
    ("http://pki.example.jp", ANY_IPV4, 80, True),
    ("http://127.0.0.1:8000", "127.0.0.1", 9000, False),  # the reported trap
    ("http://127.0.0.1", "127.0.0.1", 8000, False),  # port 80
    ("http://pki.example.jp:9000", "127.0.0.1", 9000, False),
    ("https://127.0.0.1:9000", "127.0.0.1", 9000, False),  # TLS is not served here
    ("http://127.0.0.1:99999", "127.0.0.1", 9000, False),  # not a port at all
])
def test_reaches(base_url: str, host: str, port: int, expected: bool) -> None:
    assert reaches(base_url, host, port) is expected


def test_without_jpki_base_url_the_served_address_is_the_base_url(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.base_url is None and settings.public_base_url == DEFAULT_BASE_URL
    served, warning = settings.for_server("127.0.0.1", 9123)
    assert (served.public_base_url, warning) == ("http://127.0.0.1:9123", None)
    urls = ServiceUrls(served.public_base_url)
    assert urls.ocsp() == "http://127.0.0.1:9123/ocsp"
    assert urls.crl(CaKind.SIGN, 1, "132217").startswith("http://127.0.0.1:9123/crl/")
    assert settings.base_url is None  # a copy: the caller's settings are unchanged


def test_a_wildcard_without_jpki_base_url_is_served_as_loopback_with_a_warning(
        tmp_path: Path) -> None:
    served, warning = Settings(data_dir=tmp_path).for_server(ANY_IPV4, 8000)
    assert served.public_base_url == "http://127.0.0.1:8000"
    assert warning is not None and "JPKI_BASE_URL" in warning and ANY_IPV4 in warning


def test_jpki_base_url_wins_and_a_disagreement_is_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JPKI_BASE_URL", "https://pki.example.jp")
    served, warning = Settings(data_dir=tmp_path).for_server("127.0.0.1", 9123)
    assert served.public_base_url == "https://pki.example.jp"
    assert warning is not None
    assert "https://pki.example.jp" in warning and "http://127.0.0.1:9123" in warning


def test_an_agreeing_jpki_base_url_is_no_warning(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JPKI_BASE_URL", "http://pki.example.jp:8000")
    served, warning = Settings(data_dir=tmp_path).for_server(ANY_IPV4, 8000)
    assert (served.public_base_url, warning) == ("http://pki.example.jp:8000", None)
