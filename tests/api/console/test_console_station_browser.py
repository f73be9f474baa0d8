"""Issuance through the emulated station, in headless Chromium against `jpki serve`: the clerk
finds the resident, sends the enrolment to the station with the documents checked, watches the
task page follow the station step by step (it reloads itself; no script), then revokes a
certificate at the holder's request — and OCSP says so.

The station is devices.station (its task runner and enrolment workflow) over HTTP to the
server, with the card emulator in process: what `jpki-station work` does with a reader."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.api.console.test_console_browser import (  # noqa: F401 - fixtures
    Served,
    arrive,
    browser,
    ocsp_status,
    served,
    shot,
    sign_in,
)
from tests.api.test_cli import tools  # noqa: F401 - a fixture (the CLI)
from tests.api.test_ocsp_restart import deployment  # noqa: F401 - a fixture

pytestmark = pytest.mark.hsm


def test_a_clerk_issues_through_the_station_and_revokes_in_the_browser(
        browser: Any, served: Served, tmp_path: Any) -> None:  # noqa: F811
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from cryptography.x509 import ocsp
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from devices.card.client import JpkiCard
    from devices.card.emulator.card import JpkiCardEmulator
    from devices.card.transport import InProcessTransport
    from devices.station.ca_client import CaClient
    from devices.station.tasks import TaskRunner
    from devices.station.workflow import CARD_SIGN, EnrolmentStation, _ca_issuers_url

    resident = served.resident()
    desk = served.cli("client", "add", "--name", "清瀬市 窓口1", "--role", "station",
                      "--scopes", "municipality:132217")
    sign_in(browser, served, served.account("kiyose", "clerk", "132217"))
    browser.get(f"{served.url}/console/residents?id={resident}")
    browser.find_element(By.ID, "station-task").send_keys(Keys.ENTER)
    arrive(browser, "/console/station-tasks/new")
    Select(browser.find_element(By.ID, "station")).select_by_value(desk["client_id"])
    for box in ("doc-drivers_license", "doc-passport"):
        browser.find_element(By.ID, box).send_keys(Keys.SPACE)
    shot(browser, "clerk-station-task-new")
    browser.find_element(By.ID, "queue").send_keys(Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda d: "/console/station-tasks/" in d.current_url
                                     and not d.current_url.endswith("/new"))
    assert browser.find_element(By.ID, "task-status").get_attribute("data-status") == "queued"

    # The station: its operator starts `jpki-station work`; the holder types the PINs there.
    issuer_key = rsa.generate_private_key(65537, 2048)
    card = JpkiCardEmulator.create(tmp_path / "card.json", issuer_key.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    with CaClient(served.url, desk["client_id"], desk["client_secret"]) as ca:
        station = EnrolmentStation(ca, JpkiCard(InProcessTransport(card)), issuer_key)
        runner = TaskRunner(ca, station, lambda signing: ("1234", "ABC123"))
        task = runner.claim()
        assert task is not None and task["resident_id"] == resident
        outcome = runner.run(task)
        assert outcome.status == "done", outcome
        sign = x509.load_pem_x509_certificate(
            ca.certificate(outcome.serials[CARD_SIGN])["pem"].encode())
        issuer = ca.ca_certificate(_ca_issuers_url(sign))

    # The page follows by itself (a meta refresh every two seconds) and stops once done.
    WebDriverWait(browser, 15).until(lambda d: d.find_element(
        By.ID, "task-status").get_attribute("data-status") == "done")
    states = {e.get_attribute("data-step"): e.get_attribute("data-state")
              for e in browser.find_elements(By.CSS_SELECTOR, "#steps li")}
    assert set(states.values()) == {"done"} and len(states) == 9
    shown = {e.get_attribute("data-kind"): e.text
             for e in browser.find_elements(By.CSS_SELECTOR, "#serials span")}
    assert shown == outcome.serials
    shot(browser, "clerk-station-task-done")

    # The holder asks for the signing certificate to be revoked: OCSP says so.
    sign_serial = outcome.serials[CARD_SIGN]
    browser.find_element(By.CSS_SELECTOR, "#task a").send_keys(Keys.ENTER)
    arrive(browser, "/console/residents")
    assert ocsp_status(served, sign.public_bytes(Encoding.DER), issuer.public_bytes(
        Encoding.DER)) is ocsp.OCSPCertStatus.GOOD
    browser.find_element(By.XPATH, f"//form[input[@name='serial' and @value='{sign_serial}']]"
                                   "//button[contains(@class, 'revoke')]").send_keys(Keys.ENTER)
    arrive(browser, "/console/residents/revoke")
    assert sign_serial in browser.find_element(By.ID, "revoke_message").text
    revoked_at = time.monotonic()
    # Within a second (architecture §5.5), with the holder's reason.
    while not isinstance(ocsp_status(served, sign.public_bytes(Encoding.DER),
                                     issuer.public_bytes(Encoding.DER)), x509.ReasonFlags):
        assert time.monotonic() - revoked_at < 1.0, "OCSP did not say revoked within a second"
        time.sleep(0.05)
    logs = browser.get_log("browser")
    assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs
