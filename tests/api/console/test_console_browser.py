"""The operator console in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium against a running `jpki serve` — the command as deployed,
started as its own process on a free port, on a data directory made by `jpki init` (SQLite, and
PostgreSQL). What a test needs in place — accounts, residents, certificates, a phone, relying
parties — it makes as an operator would, with the CLI on the same data directory (a phone with
tests/api/mobile_hold_kit.py, as its own process: the CLI has no command that acts as a phone).

Each page a test visits is saved as a screenshot under ``$JPKI_TEST_ARTIFACTS/console/``
(default ``build/test-artifacts/console/``), to be looked at; docs/console/ keeps the ones the
README shows. Without Chromium these tests fail in CI and skip elsewhere (tests/components.py).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from tests.api.test_cli import (  # noqa: F401 - tools is a fixture
    ADDRESS,
    BIRTH,
    NAME,
    _start_server,
    tools,
)
from tests.api.test_ocsp_restart import Deployment, deployment  # noqa: F401 - a fixture
from tests.components import missing_component

pytestmark = pytest.mark.hsm

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("JPKI_TEST_ARTIFACTS", "build/test-artifacts")) / "console"


@dataclass(frozen=True)
class Account:
    """A console account as `jpki console add` printed it."""

    username: str
    password: str
    totp_secret: str


@dataclass
class Served:
    """`jpki serve` on a deployment, and the CLI on its data directory."""

    deployment: Deployment
    log: Path
    server: subprocess.Popen[bytes] | None = None
    url: str = ""

    def start(self) -> None:
        self.server, self.url = _start_server(self.deployment.data_dir, self.log,
                                              self.deployment.env)

    def stop(self) -> None:
        """SIGTERM, as an orchestrator stops it: the server finishes what it holds."""
        if self.server is None:
            return
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(timeout=30)
        self.server = None

    def cli(self, *args: str | Path) -> Any:
        return self.deployment.cli(*args)

    def account(self, username: str, role: str, municipality: str | None = None) -> Account:
        args = ["console", "add", username, "--role", role]
        if municipality:
            args += ["--municipality", municipality]
        made = self.cli(*args)
        return Account(made["username"], made["password"], made["totp_secret"])

    def resident(self, *, municipality: str = "132217", address: str = ADDRESS,
                 name: str = NAME) -> str:
        made = self.cli("resident", "add", "--name", name, "--birth", BIRTH, "--sex", "1",
                        "--address", address, "--municipality", municipality)
        return str(made["id"])

    def issue_auth(self, resident: str) -> Path:
        """A card's authentication certificate for ``resident``, for a fresh key; its PEM."""
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        tmp = self.deployment.tmp
        key = tmp / f"key-{resident}.pem"
        key.write_bytes(rsa.generate_private_key(65537, 2048).public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        out = tmp / f"cert-{resident}.pem"
        self.cli("cert", "issue", "--resident", resident, "--kind", "auth", "--public-key", key,
                 "--out", out)
        return out


@pytest.fixture
def served(deployment: Deployment) -> Iterator[Served]:  # noqa: F811
    deployment.cli("init")
    running = Served(deployment, deployment.tmp / "serve.log")
    running.start()
    try:
        yield running
    finally:
        running.stop()


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


def shown(driver: Any, element_id: str) -> Any:
    """The element, once the page answering a form (at the same address) has it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 10).until(
        expected_conditions.presence_of_element_located((By.ID, element_id)))


def shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def sign_in(driver: Any, served: Served, new: Account, name: str | None = None) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(served.url + "/console/")
    assert driver.current_url.endswith("/console/login")
    if name:
        shot(driver, f"{name}-login")
    # The keyboard alone: type, Tab, type, Enter.
    driver.find_element(By.ID, "username").send_keys(new.username, Keys.TAB, new.password,
                                                     Keys.ENTER)
    arrive(driver, "/console/login/code")
    if name:
        shot(driver, f"{name}-code")
    # The server's clock is the machine's: the code of the current 30-second step (each
    # account signs in once per test, so no step is used twice, RFC 6238 §5.2).
    driver.find_element(By.ID, "code").send_keys(pyotp.TOTP(new.totp_secret).now(), Keys.ENTER)
    arrive(driver, "/console/")


def test_a_clerk_signs_in_registers_finds_by_reading_and_records_a_move(
        browser: Any, served: Served) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    sign_in(browser, served, served.account("kiyose", "clerk", "132217"), "clerk")
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
    browser.get(served.url + "/console/")
    assert browser.current_url.endswith("/console/login")


def test_a_foreign_municipality_and_a_wrong_role_are_refused_in_the_browser(
        browser: Any, served: Served) -> None:
    from selenium.webdriver.common.by import By

    elsewhere = served.resident(municipality="131016", address="東京都千代田区千代田１番１号")
    sign_in(browser, served, served.account("kiyose", "clerk", "132217"))
    browser.get(f"{served.url}/console/residents?id={elsewhere}")
    assert browser.find_element(By.ID, "message").text == "この操作を行う権限がありません。"
    assert "千代田" not in browser.page_source
    shot(browser, "refused-municipality")
    browser.find_element(By.ID, "logout").click()
    arrive(browser, "/console/login")
    sign_in(browser, served, served.account("agent", "agent"))
    assert not browser.find_elements(By.ID, "menu-residents")
    browser.get(f"{served.url}/console/residents?id={elsewhere}")
    assert browser.find_element(By.ID, "message").text == "この操作を行う権限がありません。"


def test_a_wrong_code_is_refused_and_english_is_one_link_away(
        browser: Any, served: Served) -> None:
    from datetime import UTC, datetime

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    new = served.account("agent", "agent")
    browser.get(served.url + "/console/login")
    browser.find_element(By.LINK_TEXT, "English").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
    browser.find_element(By.ID, "username").send_keys(new.username, Keys.TAB, new.password,
                                                      Keys.ENTER)
    arrive(browser, "/console/login/code")
    wrong = pyotp.TOTP(new.totp_secret).at(datetime.now(UTC) + timedelta(minutes=5))
    browser.find_element(By.ID, "code").send_keys(wrong, Keys.ENTER)
    arrive(browser, "/console/login/code")
    assert "wrong" in browser.find_element(By.ID, "message").text
    shot(browser, "login-refused-en")
    browser.get(served.url + "/console/")
    assert browser.current_url.endswith("/console/login")


def ocsp_request(der: bytes, issuer_der: bytes) -> bytes:
    """The OCSP request a relying party's software sends for a certificate (SHA-1 CertID)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import ocsp

    cert = x509.load_der_x509_certificate(der)
    issuer = x509.load_der_x509_certificate(issuer_der)
    return ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build() \
        .public_bytes(Encoding.DER)


def ocsp_status(served: Served, der: bytes, issuer_der: bytes) -> object:
    """What the server's /ocsp says of a certificate."""
    from cryptography.x509 import ocsp

    answer = httpx.post(served.url + "/ocsp", content=ocsp_request(der, issuer_der),
                        headers={"content-type": "application/ocsp-request"}, timeout=5)
    response = ocsp.load_der_ocsp_response(answer.content)
    if response.certificate_status is ocsp.OCSPCertStatus.REVOKED:
        return response.revocation_reason
    return response.certificate_status


def test_an_agent_holds_a_lost_phone_and_ocsp_says_so_within_a_second(
        browser: Any, served: Served) -> None:
    from cryptography.x509 import ReasonFlags
    from selenium.webdriver.common.by import By

    state = served.deployment.tmp / "phone.json"
    served.deployment.kit("enrol", state)
    phone = json.loads(state.read_text())
    auth_der = base64.b64decode(phone["mobile_auth_der"])
    issuer_der = base64.b64decode(phone["auth_ca_der"])
    assert ocsp_status(served, auth_der, issuer_der) is not ReasonFlags.certificate_hold
    sign_in(browser, served, served.account("agent", "agent"), "agent")
    browser.find_element(By.ID, "menu-callcentre").click()
    arrive(browser, "/console/callcentre")
    shot(browser, "agent-find")
    browser.find_element(By.ID, "card_number").send_keys(phone["card_number"])
    browser.find_element(By.ID, "birth_date").send_keys("19900102")
    browser.find_element(By.ID, "verify").click()
    assert shown(browser, "verified").text == "カード番号と生年月日が一致しました。"
    assert "清瀬" not in browser.page_source and "山田" not in browser.page_source
    shot(browser, "agent-file")
    browser.find_element(By.ID, "hold-phone").click()
    assert shown(browser, "message").text == "スマホ用電子証明書を一時保留にしました。"
    held_at = time.monotonic()
    shot(browser, "agent-held")
    while ocsp_status(served, auth_der, issuer_der) is not ReasonFlags.certificate_hold:
        assert time.monotonic() - held_at < 1.0, "OCSP did not say certificateHold in a second"
        time.sleep(0.05)


def test_a_supervisor_sees_the_national_figures_as_plots_and_tables(
        browser: Any, served: Served) -> None:
    from selenium.webdriver.common.by import By

    for municipality in ("132217", "011002", "011002"):
        served.issue_auth(served.resident(municipality=municipality))
    sign_in(browser, served, served.account("boss", "supervisor"))
    browser.find_element(By.ID, "menu-dashboard").click()
    arrive(browser, "/console/dashboard")
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart")) == 12
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


def test_the_dv_two_person_rule_in_the_browser(browser: Any, served: Served) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    resident = served.resident()
    clerk = served.account("kiyose", "clerk", "132217")
    first = served.account("boss", "supervisor")
    second = served.account("deputy", "supervisor")

    def sign_out() -> None:
        browser.find_element(By.ID, "logout").click()
        arrive(browser, "/console/login")

    # The counter asks to set the measures; the first supervisor approves.
    sign_in(browser, served, clerk)
    browser.get(f"{served.url}/console/residents?id={resident}")
    Select(browser.find_element(By.ID, "dv_category")).select_by_value("dv")
    browser.find_element(By.ID, "dv-set").click()
    arrive(browser, "/console/residents/dv-request")
    assert browser.find_element(By.ID, "dv_message").text.startswith("申請しました")
    sign_out()
    sign_in(browser, served, first)
    browser.find_element(By.ID, "menu-dv").click()
    arrive(browser, "/console/dv")
    shot(browser, "supervisor-dv-queue")
    assert "山田" not in browser.page_source  # the queue names no one
    browser.find_element(By.CSS_SELECTOR, "#requests button.approve").click()
    arrive(browser, "/console/dv/decide")
    assert browser.find_element(By.ID, "message").text == "承認しました。"
    browser.get(f"{served.url}/console/residents?id={resident}")
    assert browser.find_element(By.ID, "address").text == "（支援措置のため表示しません）"
    shot(browser, "supervisor-dv-masked")
    # The same supervisor asks to lift them, and cannot approve their own request …
    browser.find_element(By.ID, "dv-lift").click()
    arrive(browser, "/console/residents/dv-request")
    browser.get(f"{served.url}/console/dv")
    browser.find_element(By.CSS_SELECTOR, "#requests button.approve").click()
    arrive(browser, "/console/dv/decide")
    assert "別の統括管理者" in browser.find_element(By.ID, "message").text
    sign_out()
    # … which a second supervisor does.
    sign_in(browser, served, second)
    browser.get(f"{served.url}/console/dv")
    browser.find_element(By.CSS_SELECTOR, "#requests button.approve").click()
    arrive(browser, "/console/dv/decide")
    assert browser.find_element(By.ID, "message").text == "承認しました。"
    browser.get(f"{served.url}/console/residents?id={resident}")
    assert "清瀬市" in browser.find_element(By.ID, "address").text


def test_the_ocsp_relying_party_and_audit_panels_show_what_the_api_says(
        browser: Any, served: Served) -> None:
    """OCSP requests and relying-party calls made to the running server, the audit chain
    verified at the CLI: after a restart (the server's last OCSP tally is written as it stops,
    and the relying parties' calls are summed as it starts), the dashboard's tables say what
    GET /v1/operators/statistics says."""
    from selenium.webdriver.common.by import By

    from api.console.dashboard import figure

    cert = served.issue_auth(served.resident())
    served.cli("ca", "export", "--out", served.deployment.tmp / "ca")
    issuer = (served.deployment.tmp / "ca" / "auth-ca-g01.pem").read_bytes()
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
    issuer_der = x509.load_pem_x509_certificate(issuer).public_bytes(Encoding.DER)
    headers = {"content-type": "application/ocsp-request"}
    with httpx.Client(base_url=served.url, timeout=10) as http:
        for body in [ocsp_request(der, issuer_der)] * 5 + [b"\x30\x03\x02\x01\x01"] * 2:
            assert http.post("/ocsp", content=body, headers=headers).status_code == 200
        rp = served.cli("rp", "add", "--name", "株式会社検証", "--kind", "platform_operator",
                        "--purpose", "kyc", "--scopes", "status")
        auth = (rp["client_id"], rp["client_secret"])
        for purpose, serials, status in (("kyc", ["12"], 200), ("kyc", ["12", "34"], 200),
                                         ("marketing", ["12"], 403)):
            answer = http.post("/v1/status", auth=auth,
                               json={"purpose": purpose, "serials": serials})
            assert answer.status_code == status, answer.text
    served.stop()
    verified = served.cli("audit", "verify")
    served.start()
    ops = served.cli("client", "add", "--name", "ops", "--role", "operator")
    sign_in(browser, served, served.account("boss", "supervisor"))  # audited: before the API
    api = httpx.get(served.url + "/v1/operators/statistics?days=30", timeout=10,
                    auth=(ops["client_id"], ops["client_secret"])).json()
    today = api["ocsp"][-1]
    assert (today["requests"], today["successful"]) == (7, 5)
    assert api["rp_usage"] == [{"relying_party": rp["relying_party"]["id"],
                                "name": "株式会社検証", "scope": "status", "calls": 2,
                                "refused": 1, "items": 3}]
    audit = api["audit_verification"]
    assert (audit["outcome"], audit["records"]) == ("ok", verified["records"])
    browser.get(served.url + "/console/dashboard?days=30")

    def panel_shot(name: str, png: str) -> None:
        # The panel at the top of the window, its table open: a fragment of the same page
        # scrolls to it without loading it again (and without a script).
        browser.get(f"{served.url}/console/dashboard?days=30#panel-{name}")
        shot(browser, png)

    def table(name: str) -> list[list[str]]:
        panel = browser.find_element(By.ID, f"panel-{name}")
        panel.find_element(By.TAG_NAME, "summary").click()
        return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in panel.find_elements(By.CSS_SELECTOR, "tbody tr")]

    ocsp_rows = table("ocsp")
    assert len(ocsp_rows) == len(api["ocsp"]) == 30
    for row, day in zip(ocsp_rows, api["ocsp"], strict=True):
        expected = [day["day"], str(day["requests"]), str(day["successful"]),
                    figure(day["per_second"]), figure(day["peak_per_second"]),
                    figure(day["mean_ms"]), figure(day["p50_ms"]), figure(day["p99_ms"])]
        if day is today:  # today's mean rate is over the part of the day gone by: read later
            del row[3], expected[3]
        assert row == expected
    panel_shot("ocsp", "supervisor-dashboard-ocsp")
    assert table("rp_usage") == [[rp["relying_party"]["id"], "株式会社検証", "status", "2", "1",
                                  "3"]]
    coverage = api["rp_coverage"]
    assert browser.find_element(By.ID, "rp-coverage").text == (
        f"監査ログのレコード {coverage['through']} まで集計（全 {coverage['head']} 件、"
        f"集計日時 {coverage['at'][:19]}+00:00）")
    panel_shot("rp_usage", "supervisor-dashboard-rp-usage")
    audit_rows = dict(table("audit"))
    assert audit_rows["結果"] == "正常"
    assert audit_rows["検証したレコード数"] == str(verified["records"])
    assert audit_rows["現在のレコード数"] == str(audit["head"])
    assert audit_rows["最終実行日時"] == audit["at"][:19] + "+00:00"
    panel_shot("audit", "supervisor-dashboard-audit")
    logs = browser.get_log("browser")
    assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs
