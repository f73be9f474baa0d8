"""Settings, from environment variables (prefix ``JPKI_``), built where they are used.

Nothing here runs at import time: the app factory and the CLI build a :class:`Settings`
(architecture §2). The embedded defaults need nothing but a data directory: SQLite at
``<data>/jpki.db`` and a SoftHSM token under ``<data>/tokens`` whose PINs ``jpki init`` generates
into ``<data>/secrets`` (mode 0600). A deployment passes its own PINs through the environment
instead (``JPKI_HSM_USER_PIN``, ``JPKI_HSM_SO_PIN``); they never come from code, and well-known
placeholder PINs are refused.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jpki.errors import InvalidInput
from jpki.urls import WILDCARD_HOSTS, reaches, served_base_url

# Where `jpki serve` listens by default: the base URL of every command that does not serve.
DEFAULT_BASE_URL = "http://127.0.0.1:8000"

_PLACEHOLDER_PINS = frozenset({"", "0000", "1234", "12345678", "changeme", "change-me",
                               "password", "secret", "pin", "so-pin", "user-pin"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JPKI_", extra="ignore")

    data_dir: Path = Field(default=Path("var"))
    database_url: str | None = None
    # JPKI_BASE_URL: the public address, written into certificates and CRLs (jpki.urls). Unset,
    # `jpki serve` derives it from the address it listens on (for_server); other commands use
    # DEFAULT_BASE_URL.
    base_url: str | None = None
    recipe: Path | None = None
    hsm_module: str | None = None
    hsm_user_pin: SecretStr | None = None
    hsm_so_pin: SecretStr | None = None
    hsm_pool_size: int = Field(default=4, ge=1, le=64)
    # Bulk signing (the batch issuance path) in a child process with its own token session
    # (hsm.bulk_signer): "auto" does so for SoftHSM, whose signatures use this process's CPU
    # and would compete with Python for the interpreter's lock; a network HSM signs elsewhere.
    hsm_bulk_signer: Literal["auto", "process", "pool"] = "auto"
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Pending issuance intents older than this are abandoned (treated as revoked).
    pending_timeout_seconds: int = Field(default=300, ge=30)
    # Relying parties (jpki.relying_parties.service): a token bucket per relying party, shared
    # by every process and node through the database (jpki.rate_limits).
    rp_rate_per_second: float = Field(default=20.0, gt=0, le=1_000_000)
    rp_rate_burst: int = Field(default=40, ge=1, le=10_000_000)
    # A rotated client secret stays valid this long unless the rotation says otherwise.
    rp_secret_overlap_hours: int = Field(default=24, ge=0, le=24 * 90)
    # The longest a holder's consent to the latest basic 4 information may run.
    consent_max_days: int = Field(default=365, ge=1, le=5 * 366)
    # Readiness (/readyz): every OCSP responder certificate has at least this many days left.
    # Below the recipe's renewal threshold, so that it fails only when renewal has failed.
    ready_responder_days: int = Field(default=2, ge=0, le=365)
    # Requests made without credentials (the phone's and the holder's signed requests): a
    # token bucket per source address (an IPv6 /64), shared like the relying parties'.
    anonymous_rate_per_second: float = Field(default=20.0, gt=0, le=1_000_000)
    anonymous_rate_burst: int = Field(default=100, ge=1, le=10_000_000)
    # Smartphone challenges handed out and neither used nor expired (jpki.mobile.service): at most
    # this
    # many in all, and from one source address.
    challenges_max_outstanding: int = Field(default=10_000, ge=1, le=10_000_000)
    challenges_max_per_source: int = Field(default=100, ge=1, le=10_000_000)
    # `jpki serve`'s HTTP limits (api.http_protocol): the largest request head (431 beyond it),
    # how long a head may take to arrive and a body may pause (408), how long an idle
    # keep-alive connection is kept, and how many connections may be open at once (503).
    http_max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    http_read_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    http_keep_alive_seconds: int = Field(default=5, ge=1, le=3600)
    http_max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    # Authentication (jpki.access.auth_throttle): failed checks allowed per client id and per source
    # address, refilled over the window, counted in the database every node shares; beyond
    # them 429 without checking anything. The max keys bound each process's cache of blocked
    # ones.
    auth_failures_per_client: int = Field(default=10, ge=1, le=1_000_000)
    auth_failures_per_address: int = Field(default=50, ge=1, le=1_000_000)
    auth_failure_window_seconds: float = Field(default=60.0, gt=0, le=86_400)
    auth_throttle_max_keys: int = Field(default=65_536, ge=1, le=10_000_000)
    # How long a throttled caller's 429 is held (a tarpit against closed-loop floods).
    auth_refusal_delay_seconds: float = Field(default=1.0, ge=0, le=30)
    # Cheap checks (a row read and one HMAC) running at once, on threads that are not the
    # request pool's tokens (api.deps); and the verifier of legacy Argon2id hashes
    # (jpki.access.client_secrets): checks running at once (64 MiB each) and waiting beyond them.
    auth_concurrency: int = Field(default=4, ge=1, le=64)
    auth_legacy_workers: int = Field(default=1, ge=1, le=16)
    auth_legacy_queue: int = Field(default=4, ge=0, le=1_000)
    # The operator console (api.console): people's password checks (Argon2id, 19 MiB each) at
    # once; and whether its session cookie is marked Secure (only over HTTPS) — turn off only
    # to try the console over plain HTTP on one's own machine.
    console_password_checks: int = Field(default=2, ge=1, le=16)
    console_secure_cookies: bool = True
    # The layered measures over smartphones (重層的な措置, jpki.mobile.sweep), run by the
    # maintenance loop at most once per interval: a device that has not checked in for more
    # than the flag threshold is flagged; past the hold threshold (0: never) its certificates
    # are put on hold as a lost phone's are, until the holder lifts the hold from the phone.
    mobile_sweep_interval_seconds: int = Field(default=3600, ge=60, le=7 * 86_400)
    mobile_flag_silent_days: int = Field(default=90, ge=1, le=3650)
    mobile_hold_silent_days: int = Field(default=180, ge=0, le=3650)

    @model_validator(mode="after")
    def _hold_after_flag(self) -> Self:
        # A device is flagged before anything is done to it: the hold threshold, when set, lies
        # beyond the flag threshold.
        if 0 < self.mobile_hold_silent_days <= self.mobile_flag_silent_days:
            raise ValueError("JPKI_MOBILE_HOLD_SILENT_DAYS must be 0 or more than "
                             "JPKI_MOBILE_FLAG_SILENT_DAYS")
        return self

    @property
    def public_base_url(self) -> str:
        return self.base_url or DEFAULT_BASE_URL

    def for_server(self, host: str, port: int) -> tuple[Settings, str | None]:
        """These settings for a server listening on ``host``:``port``, and a warning for the
        operator, if any.

        A URL written into a certificate is a promise for its lifetime: without JPKI_BASE_URL the
        URLs name the address actually served, not a default port nobody listens on (a station
        would otherwise fail only at "write certificates" and revoke what it issued). When
        JPKI_BASE_URL is set it wins — it is the public address, perhaps a proxy's — but a
        disagreement with the served address is worth one warning.
        """
        served = served_base_url(host, port)
        if self.base_url is None:
            warning = None
            if host.strip().strip("[]") in WILDCARD_HOSTS:
                warning = (f"listening on every address ({host}) without JPKI_BASE_URL: "
                           f"certificates and CRLs name {served}, which only this machine "
                           "reaches; set JPKI_BASE_URL to the address clients use")
            return self.model_copy(update={"base_url": served}), warning
        if reaches(self.base_url, host, port):
            return self, None
        return self, (f"JPKI_BASE_URL is {self.base_url} but this server listens on {served}: "
                      f"certificates and CRLs name {self.base_url}, right only if it reaches "
                      "this server (a reverse proxy, a port mapping)")

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'jpki.db'}"

    @property
    def secrets_dir(self) -> Path:
        return self.resolved_data_dir / "secrets"

    def _pin(self, value: SecretStr | None, file_name: str) -> str | None:
        if value is not None:
            pin = value.get_secret_value()
        else:
            path = self.secrets_dir / file_name
            if not path.exists():
                return None
            pin = path.read_text(encoding="ascii").strip()
        if pin.lower() in _PLACEHOLDER_PINS or len(pin) < 8:
            raise InvalidInput(f"the HSM PIN from {file_name} / environment is a placeholder or "
                               "shorter than 8 characters")
        return pin

    def user_pin(self) -> str | None:
        return self._pin(self.hsm_user_pin, "hsm-user-pin")

    def so_pin(self) -> str | None:
        return self._pin(self.hsm_so_pin, "hsm-so-pin")

    def ensure_pins(self) -> tuple[str, str, bool]:
        """(user PIN, SO PIN, created): generate random PINs into the secrets directory when
        neither the environment nor an earlier `jpki init` provides them."""
        user, so = self.user_pin(), self.so_pin()
        created = False
        if user is None or so is None:
            self.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.secrets_dir, 0o700)
            for name, current in (("hsm-user-pin", user), ("hsm-so-pin", so)):
                if current is None:
                    path = self.secrets_dir / name
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w", encoding="ascii") as fh:
                        fh.write(secrets.token_hex(16) + "\n")
                    created = True
            user, so = self.user_pin(), self.so_pin()
        assert user is not None and so is not None
        return user, so, created
