"""The operator console in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium against the app served over HTTP by uvicorn.

Each page a test visits is saved as a screenshot under ``$JPKI_TEST_ARTIFACTS/console/``
(default ``build/test-artifacts/console/``), to be looked at; docs/console/ keeps the ones the
README shows. Without Chromium these tests fail in CI and skip elsewhere (tests/components.py).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from jpki.access.authz import Operation, authorize
from jpki.access.console_accounts import ConsoleRole, NewAccount
from jpki.access.principals import Principal
from tests.components import missing_component
from tests.conftest import FixedClock, LiveServer

pytestmark = pytest.mark.hsm

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"
LOCAL = Principal.local_operator("pytest")
ARTIFACTS = Path(os.environ.get("JPKI_TEST_ARTIFACTS", "build/test-artifacts")) / "console"


@pytest.fixture
def browser() -> Iterator[Any]:
    binary = next((b for b in CHROMIUM if Path(b).exists()), None)
    if binary is None or not Path(CHROMEDRIVER).exists() or shutil.which("chromedriver") is None:
        missing_component("headless Chromium is missing: apt-get install chromium "
                          "chromium-driver (scripts/setup does)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing_component("selenium is missing: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1100,760", "--lang=ja", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def arrive(driver: Any, path: str) -> None:
    """Wait until the browser has followed a form's answer (and its redirect) to ``path``."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: d.current_url.split("?")[0].endswith(path))


def shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def account(server: LiveServer, username: str, role: ConsoleRole,
            municipality: str | None = None) -> NewAccount:
    return server.services.console.create(
        authorize(LOCAL, Operation.CONSOLE_ACCOUNT_CREATE), username=username, role=role,
        municipality_code=municipality)


def sign_in(driver: Any, server: LiveServer, clock: FixedClock, new: NewAccount,
            name: str | None = None) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(server.url + "/console/")
    assert driver.current_url.endswith("/console/login")
    if name:
        shot(driver, f"{name}-login")
    # The keyboard alone: type, Tab, type, Enter.
    driver.find_element(By.ID, "username").send_keys(new.username, Keys.TAB, new.password,
                                                     Keys.ENTER)
    arrive(driver, "/console/login/code")
    if name:
        shot(driver, f"{name}-code")
    driver.find_element(By.ID, "code").send_keys(pyotp.TOTP(new.totp_secret).at(clock.now()),
                                                 Keys.ENTER)
    arrive(driver, "/console/")


def test_a_clerk_signs_in_registers_finds_by_reading_and_records_a_move(
        browser: Any, live_server: LiveServer, clock: FixedClock) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    sign_in(browser, live_server, clock, account(live_server, "kiyose", ConsoleRole.CLERK,
                                                  "132217"), "clerk")
    assert browser.find_element(By.ID, "role").text == "窓口職員"
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "ja"
    shot(browser, "clerk-home")
    browser.find_element(By.ID, "menu-residents").click()
    arrive(browser, "/console/residents")
    browser.find_element(By.ID, "new-resident").click()
    arrive(browser, "/console/residents/new")
    # The keyboard alone, field after field.
    browser.find_element(By.ID, "name").send_keys(
        "山田 花子", Keys.TAB, "やまだ はなこ", Keys.TAB, "19850401")
    Select(browser.find_element(By.ID, "sex")).select_by_value("2")
    browser.find_element(By.ID, "address").send_keys("東京都清瀬市竹丘一丁目１番１号")
    shot(browser, "clerk-register")
    browser.find_element(By.ID, "register").click()
    arrive(browser, "/console/residents")
    assert browser.find_element(By.ID, "name_kana").text == "ヤマダ\u3000ハナコ"
    browser.find_element(By.LINK_TEXT, "住民の検索へ").click()
    arrive(browser, "/console/residents")
    browser.find_element(By.ID, "name").send_keys("ヤマダ ハナコ", Keys.TAB, "19850401",
                                                  Keys.ENTER)
    arrive(browser, "/console/residents/search")
    shot(browser, "clerk-search")
    browser.find_element(By.CSS_SELECTOR, "#results a.open").click()
    arrive(browser, "/console/residents")
    assert browser.find_element(By.ID, "name").text == "山田\u3000花子"
    Select(browser.find_element(By.ID, "kind")).select_by_value("address")
    browser.find_element(By.ID, "event_address").send_keys("東京都清瀬市中里二丁目２番２号")
    browser.find_element(By.ID, "record").click()
    arrive(browser, "/console/residents/events")
    assert browser.find_element(By.ID, "message").text.startswith("記録しました。")
    assert "中里二丁目" in browser.find_element(By.ID, "address").text
    shot(browser, "clerk-resident")
    # No script ran or was allowed to: the page loaded nothing from elsewhere, and nothing
    # failed to load.
    logs = browser.get_log("browser")
    assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs
    browser.find_element(By.ID, "logout").click()
    arrive(browser, "/console/login")
    browser.get(live_server.url + "/console/")
    assert browser.current_url.endswith("/console/login")


def test_a_foreign_municipality_and_a_wrong_role_are_refused_in_the_browser(
        browser: Any, live_server: LiveServer, clock: FixedClock,
        new_resident: Any) -> None:
    from selenium.webdriver.common.by import By

    elsewhere = new_resident(municipality="131016", address="東京都千代田区千代田１番１号")
    sign_in(browser, live_server, clock, account(live_server, "kiyose", ConsoleRole.CLERK,
                                                  "132217"))
    browser.get(f"{live_server.url}/console/residents?id={elsewhere}")
    assert browser.find_element(By.ID, "message").text == "この操作を行う権限がありません。"
    assert "千代田" not in browser.page_source
    shot(browser, "refused-municipality")
    browser.find_element(By.ID, "logout").click()
    arrive(browser, "/console/login")
    clock.advance(seconds=30)
    sign_in(browser, live_server, clock, account(live_server, "agent", ConsoleRole.AGENT))
    assert not browser.find_elements(By.ID, "menu-residents")
    browser.get(f"{live_server.url}/console/residents?id={elsewhere}")
    assert browser.find_element(By.ID, "message").text == "この操作を行う権限がありません。"


def test_a_wrong_code_is_refused_and_english_is_one_link_away(
        browser: Any, live_server: LiveServer, clock: FixedClock) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    new = account(live_server, "agent", ConsoleRole.AGENT)
    browser.get(live_server.url + "/console/login")
    browser.find_element(By.LINK_TEXT, "English").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
    browser.find_element(By.ID, "username").send_keys(new.username, Keys.TAB, new.password,
                                                      Keys.ENTER)
    arrive(browser, "/console/login/code")
    wrong = pyotp.TOTP(new.totp_secret).at(clock.now() + timedelta(minutes=5))
    browser.find_element(By.ID, "code").send_keys(wrong, Keys.ENTER)
    arrive(browser, "/console/login/code")
    assert "wrong" in browser.find_element(By.ID, "message").text
    shot(browser, "login-refused-en")
    browser.get(live_server.url + "/console/")
    assert browser.current_url.endswith("/console/login")


def ocsp_status(server: LiveServer, der: bytes) -> object:
    """What the server's /ocsp says of a certificate, as a relying party's software asks."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import ocsp

    from jpki.model import CaKind

    cert = x509.load_der_x509_certificate(der)
    with server.services.uow() as uow:
        generation = uow.cas.current(CaKind.AUTH)
        assert generation is not None
        issuer = x509.load_der_x509_certificate(generation.certificate_der)
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    answer = httpx.post(server.url + "/ocsp", content=request.public_bytes(Encoding.DER),
                        headers={"content-type": "application/ocsp-request"}, timeout=5)
    response = ocsp.load_der_ocsp_response(answer.content)
    if response.certificate_status is ocsp.OCSPCertStatus.REVOKED:
        return response.revocation_reason
    return response.certificate_status


def test_an_agent_holds_a_lost_phone_and_ocsp_says_so_within_a_second(
        browser: Any, live_server: LiveServer, clock: FixedClock) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509 import ReasonFlags
    from selenium.webdriver.common.by import By

    from jpki.model import CertKind
    from tests.holder_kit import new_holder

    holder = new_holder(live_server.services,
                        [rsa.generate_private_key(65537, 2048) for _ in range(4)])
    phone = holder.enrol_phone()
    with live_server.services.uow() as uow:
        card = uow.cards.active_for_resident(holder.resident_id)
        assert card is not None
    auth_der = phone.certs[CertKind.MOBILE_AUTH]
    assert ocsp_status(live_server, auth_der) is not ReasonFlags.certificate_hold
    sign_in(browser, live_server, clock, account(live_server, "agent", ConsoleRole.AGENT),
            "agent")
    browser.find_element(By.ID, "menu-callcentre").click()
    arrive(browser, "/console/callcentre")
    shot(browser, "agent-find")
    browser.find_element(By.ID, "card_number").send_keys(card.number)
    browser.find_element(By.ID, "birth_date").send_keys("19900102")
    browser.find_element(By.ID, "verify").click()
    assert browser.find_element(By.ID, "verified").text == "カード番号と生年月日が一致しました。"
    assert "清瀬" not in browser.page_source and "山田" not in browser.page_source
    shot(browser, "agent-file")
    browser.find_element(By.ID, "hold-phone").click()
    assert browser.find_element(By.ID, "message").text == "スマホ用電子証明書を一時保留にしました。"
    held_at = time.monotonic()
    shot(browser, "agent-held")
    while ocsp_status(live_server, auth_der) is not ReasonFlags.certificate_hold:
        assert time.monotonic() - held_at < 1.0, "OCSP did not say certificateHold in a second"
        time.sleep(0.05)


def test_a_supervisor_sees_the_national_figures_as_plots_and_tables(
        browser: Any, live_server: LiveServer, clock: FixedClock,
        new_resident: Any, subject_keys: list[bytes]) -> None:
    from selenium.webdriver.common.by import By

    from jpki.issuance.service import KeyRequest
    from jpki.model import CertKind
    from tests.holder_kit import ISSUE

    for municipality, key in (("132217", subject_keys[0]), ("011002", subject_keys[1]),
                              ("011002", subject_keys[2])):
        resident = new_resident(municipality=municipality)
        live_server.services.issuance.issue(ISSUE, resident, [KeyRequest(CertKind.CARD_AUTH,
                                                                         key)])
    sign_in(browser, live_server, clock, account(live_server, "boss", ConsoleRole.SUPERVISOR))
    browser.find_element(By.ID, "menu-dashboard").click()
    arrive(browser, "/console/dashboard")
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart")) == 8
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.map circle.prefecture")) == 2
    shot(browser, "supervisor-dashboard")
    panel = browser.find_element(By.ID, "panel-prefectures")
    panel.find_element(By.TAG_NAME, "summary").click()
    rows = {tr.find_elements(By.TAG_NAME, "td")[0].text:
            tr.find_elements(By.TAG_NAME, "td")[2].text
            for tr in panel.find_elements(By.CSS_SELECTOR, "tbody tr")}
    assert rows == {"北海道": "2", "東京都": "1"}  # the auth column (card_auth is the second)
    shot(browser, "supervisor-prefectures")
    logs = browser.get_log("browser")
    assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs


def test_the_dv_two_person_rule_in_the_browser(browser: Any, live_server: LiveServer,
                                                clock: FixedClock, new_resident: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    resident = new_resident()
    clerk = account(live_server, "kiyose", ConsoleRole.CLERK, "132217")
    first = account(live_server, "boss", ConsoleRole.SUPERVISOR)
    second = account(live_server, "deputy", ConsoleRole.SUPERVISOR)

    def sign_out() -> None:
        browser.find_element(By.ID, "logout").click()
        arrive(browser, "/console/login")
        clock.advance(seconds=30)

    # The counter asks to set the measures; the first supervisor approves.
    sign_in(browser, live_server, clock, clerk)
    browser.get(f"{live_server.url}/console/residents?id={resident}")
    Select(browser.find_element(By.ID, "dv_category")).select_by_value("dv")
    browser.find_element(By.ID, "dv-set").click()
    arrive(browser, "/console/residents/dv-request")
    assert browser.find_element(By.ID, "dv_message").text.startswith("申請しました")
    sign_out()
    sign_in(browser, live_server, clock, first)
    browser.find_element(By.ID, "menu-dv").click()
    arrive(browser, "/console/dv")
    shot(browser, "supervisor-dv-queue")
    assert "山田" not in browser.page_source  # the queue names no one
    browser.find_element(By.CSS_SELECTOR, "#requests button.approve").click()
    arrive(browser, "/console/dv/decide")
    assert browser.find_element(By.ID, "message").text == "承認しました。"
    browser.get(f"{live_server.url}/console/residents?id={resident}")
    assert browser.find_element(By.ID, "address").text == "（支援措置のため表示しません）"
    shot(browser, "supervisor-dv-masked")
    # The same supervisor asks to lift them, and cannot approve their own request …
    browser.find_element(By.ID, "dv-lift").click()
    arrive(browser, "/console/residents/dv-request")
    browser.get(f"{live_server.url}/console/dv")
    browser.find_element(By.CSS_SELECTOR, "#requests button.approve").click()
    arrive(browser, "/console/dv/decide")
    assert "別の統括管理者" in browser.find_element(By.ID, "message").text
    sign_out()
    # … which a second supervisor does.
    sign_in(browser, live_server, clock, second)
    browser.get(f"{live_server.url}/console/dv")
    browser.find_element(By.CSS_SELECTOR, "#requests button.approve").click()
    arrive(browser, "/console/dv/decide")
    assert browser.find_element(By.ID, "message").text == "承認しました。"
    browser.get(f"{live_server.url}/console/residents?id={resident}")
    assert "清瀬市" in browser.find_element(By.ID, "address").text
