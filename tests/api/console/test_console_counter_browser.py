"""The identity-proofing guide (api.console.counter) in headless Chromium, with the keyboard
alone: the clerk ticks what the person at the window shows and reads the rule's verdict — a
pattern met, a refusal with what was not counted, a proxy lacking its letter of delegation.

The browser, the live server and the screenshots are test_console_browser.py's (screenshots
under ``$JPKI_TEST_ARTIFACTS/console/``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.console.test_console_browser import (  # noqa: F401 - fixtures
    Served,
    arrive,
    browser,
    served,
    shot,
    sign_in,
)
from tests.api.test_cli import tools  # noqa: F401 - a fixture (the CLI)
from tests.api.test_ocsp_restart import deployment  # noqa: F401 - a fixture

pytestmark = pytest.mark.hsm


def test_a_clerk_is_guided_through_the_proofing_patterns_with_the_keyboard(
        browser: Any, served: Served) -> None:  # noqa: F811
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    resident = served.resident()
    sign_in(browser, served, served.account("kiyose", "clerk", "132217"))
    browser.get(f"{served.url}/console/residents?id={resident}")
    browser.find_element(By.ID, "proofing-guide").send_keys(Keys.ENTER)
    arrive(browser, "/console/counter/proofing")
    assert "記録しません" in browser.find_element(By.ID, "guide_note").text

    def tick(element_id: str) -> None:
        # Space toggles a focused checkbox or radio button: no mouse.
        browser.find_element(By.ID, element_id).send_keys(Keys.SPACE)

    def check() -> str:
        # The guide answers at its own address: wait for the new page, not for the address.
        # While Chromium swaps the document a node lookup may fail ("does not belong to the
        # document"): such errors mean "not yet", not a failure.
        old = browser.find_element(By.TAG_NAME, "html").id
        browser.find_element(By.ID, "check").send_keys(Keys.ENTER)

        def verdict(d: Any) -> str | bool:
            if d.find_element(By.TAG_NAME, "html").id == old:
                return False
            text: str = d.find_element(By.ID, "verdict").text
            return text or False

        found: str = WebDriverWait(browser, 10, ignored_exceptions=(
            WebDriverException,)).until(verdict)
        return found

    # One 甲 alone: refused, and the driving-record certificate from before 2012 not counted.
    tick("a.passport")
    tick("a.driving_record_certificate")
    browser.find_element(By.ID, "a.driving_record_certificate.date").send_keys("20100401")
    assert check() == "どのパターン（A〜E）も満たしません。交付できません。"
    assert "2012年4月1日以降" in browser.find_element(By.ID, "not_counted").text
    shot(browser, "clerk-proofing-refused")

    # What was ticked is kept; a measure added makes pattern A, with the station's options.
    assert browser.find_element(By.ID, "a.passport").is_selected()
    tick("m.pin_entry")
    assert check() == "本人確認のパターン A を満たします。"
    assert "--document passport" in browser.find_element(By.ID, "station").text
    shot(browser, "clerk-proofing")

    # A proxy: their own two 甲, the applicant's 甲 and a health-insurance card (B), but no
    # letter of delegation yet.
    tick("m.pin_entry")
    tick("a.driving_record_certificate")
    tick("presence-proxy")
    browser.find_element(By.CSS_SELECTOR, "#proxy summary").send_keys(Keys.ENTER)
    tick("p.drivers_license")
    tick("p.passport")
    browser.find_element(By.ID, "a.health_insurance_card").send_keys("1")  # 1点（写真なし）
    tick("hardship_proof")
    assert check() == "代理人への交付の条件を満たしません。交付できません。"
    assert "委任状" in browser.find_element(By.ID, "missing").text
    shot(browser, "clerk-proofing-proxy-missing")
    tick("delegation_letter")
    assert check() == "代理人への交付：パターン B を満たします。"
    shot(browser, "clerk-proofing-proxy")

    logs = browser.get_log("browser")
    assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs


def test_a_clerk_confirms_a_delivery_and_replaces_a_lost_card_in_the_browser(
        browser: Any, served: Served) -> None:  # noqa: F811
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    resident = served.resident()
    # A station of Kiyose records the proofing and has both certificates issued — and its
    # confirmation of the delivery never comes.
    desk = served.cli("client", "add", "--name", "kiyose-desk", "--role", "station",
                      "--scopes", "municipality:132217")
    auth = (desk["client_id"], desk["client_secret"])
    proofing = httpx.post(f"{served.url}/v1/stations/proofings", auth=auth, timeout=30, json={
        "resident_id": resident, "presence": "in_person",
        "applicant_documents": [{"type": "drivers_license"}, {"type": "passport"}]})
    assert proofing.status_code == 201, proofing.text

    def pem() -> str:
        return rsa.generate_private_key(65537, 2048).public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    issued = httpx.post(f"{served.url}/v1/stations/certificates", auth=auth, timeout=30, json={
        "resident_id": resident, "proofing_id": proofing.json()["id"],
        "sign_public_key": pem(), "auth_public_key": pem()})
    assert issued.status_code == 201, issued.text
    sign_in(browser, served, served.account("kiyose", "clerk", "132217"))
    browser.get(f"{served.url}/console/residents?id={resident}")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#certificates button.deliver")) == 2
    _ = browser.find_element(By.ID, "card").location_once_scrolled_into_view  # for the shot
    shot(browser, "clerk-delivery")
    browser.find_element(By.CSS_SELECTOR, "#certificates button.deliver").send_keys(Keys.ENTER)
    arrive(browser, "/console/counter/delivery")
    assert browser.find_element(By.ID, "delivery_message").text.startswith("交付を確認しました")
    browser.find_element(By.CSS_SELECTOR, "#certificates button.abandon").send_keys(Keys.ENTER)
    arrive(browser, "/console/counter/abandonment")
    assert browser.find_element(By.ID, "delivery_message").text.startswith("交付前に破棄し")
    assert not browser.find_elements(By.CSS_SELECTOR, "#certificates button.deliver")

    browser.find_element(By.ID, "card-lost").send_keys(Keys.ENTER)
    arrive(browser, "/console/residents/card-event")
    browser.find_element(By.CSS_SELECTOR, "#new_card summary").send_keys(Keys.ENTER)
    browser.find_element(By.ID, "new_card_number").send_keys("NEWCARD0001", Keys.ENTER)
    arrive(browser, "/console/counter/card")
    assert browser.find_element(By.ID, "card_message").text.startswith("新しいカードを登録")
    assert browser.find_element(By.ID, "card_number").text == "NEWCARD0001"
    _ = browser.find_element(By.ID, "card_message").location_once_scrolled_into_view
    shot(browser, "clerk-new-card")
    logs = browser.get_log("browser")
    assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs
