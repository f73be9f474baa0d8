"""The station's side of a counter's task (the CA's jpki.registry.station_tasks): claim the
oldest task queued for this station, run the enrolment or renewal it names with the holder at
the PIN pad, and report each step as it begins — which the clerk's console shows — then how it
ended.

The holder's PINs are typed at the station (``pins``), never carried by the task. A task that
fails reports the problem's code only: no detail, which could name what the card or the CA said
about someone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devices.card.jpki_ap import Pin
from devices.station.ca_client import CaClient, CaRefused
from devices.station.workflow import EnrolmentResult, EnrolmentStation
from jpki.errors import JpkiError

# The workflow's step names (devices.station.workflow) as the CA's task reports name them.
STEP_CODES = {
    "check PIN formats": "pin_format",
    "record identity proofing": "proofing",
    "authenticate as issuer": "issuer_auth",
    "generate key pairs on the card": "keygen",
    "issue certificates": "issue",
    "renew certificates": "issue",
    "write certificates": "write",
    "set PINs": "pins",
    "read back and verify": "verify",
    "confirm delivery": "delivery",
}

# A PIN reset's task kinds (jpki.registry.station_tasks.KINDS) and the PIN each resets.
PIN_RESETS = {"pin_auth": "auth", "pin_sign": "sign"}


class StationSetupError(JpkiError):
    code = "station.setup"
    title = "The station is not set up for this task"


Pins = Callable[[bool], tuple[str, str | None]]  # signing eligible → (auth PIN, sign password)
NewPin = Callable[[str], str]  # "auth" or "sign" → the new value, typed by the holder


@dataclass(frozen=True)
class TaskOutcome:
    task_id: str
    status: str  # done | failed
    code: str | None
    serials: dict[str, str]


class TaskRunner:
    def __init__(self, ca: CaClient, station: EnrolmentStation, pins: Pins,
                 new_pin: NewPin | None = None) -> None:
        self.ca = ca
        self.station = station
        self.pins = pins
        self.new_pin = new_pin

    def claim(self) -> dict[str, Any] | None:
        return self.ca.claim_task()

    def run(self, task: dict[str, Any]) -> TaskOutcome:
        task_id = str(task["id"])
        last = ["claimed"]

        def on_step(name: str) -> None:
            code = STEP_CODES.get(name)
            if code is not None and code != last[0]:
                last[0] = code
                self.ca.report_task(task_id, code)

        try:
            if task["kind"] in PIN_RESETS:
                self._reset(task, on_step)
                self.ca.report_task(task_id, last[0], outcome="done")
                return TaskOutcome(task_id, "done", None, {})
            result = self._run(task, on_step)
        except CaRefused as exc:
            return self._failed(task_id, last[0], exc.ca_code or "station.ca_refused")
        except JpkiError as exc:
            cause = exc.__cause__
            code = getattr(cause, "ca_code", None) or getattr(cause, "code", None) or exc.code
            return self._failed(task_id, last[0], str(code))
        self.ca.report_task(task_id, last[0], outcome="done", serials=result.serials)
        return TaskOutcome(task_id, "done", None, dict(result.serials))

    def _run(self, task: dict[str, Any], on_step: Callable[[str], None]) -> EnrolmentResult:
        resident_id = str(task["resident_id"])
        proofing = dict(task["proofing"])
        if task["kind"] == "renew":
            return self.station.renew(resident_id, proofing=proofing, on_step=on_step)
        eligible = bool(self.ca.resident(resident_id).get("signing_eligible"))
        auth_pin, sign_pin = self.pins(eligible)
        return self.station.enroll(resident_id, proofing=proofing, auth_pin=auth_pin,
                                   sign_pin=sign_pin, on_step=on_step)

    def _reset(self, task: dict[str, Any], on_step: Callable[[str], None]) -> None:
        which = PIN_RESETS[str(task["kind"])]
        if self.new_pin is None:
            raise StationSetupError("this station takes no new PIN")
        self.station.pin_reset(str(task["resident_id"]),
                               pin=Pin.SIGN if which == "sign" else Pin.AUTH,
                               new_value=self.new_pin(which), proofing=dict(task["proofing"]),
                               on_step=on_step)

    def _failed(self, task_id: str, step: str, code: str) -> TaskOutcome:
        # A code, as the CA's problem documents spell them; anything else is the station's.
        safe = code if code.replace(".", "").replace("_", "").isalnum() and \
            code[:1].isalpha() and code.islower() else "station.failed"
        self.ca.report_task(task_id, step, outcome="failed", error_code=safe[:64])
        return TaskOutcome(task_id, "failed", safe, {})
