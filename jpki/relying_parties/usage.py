"""What an audit record says of a relying party's use of a scope (the dashboard's relying-party
usage, summed per day by jpki.store.rp_usage).

Every relying-party call leaves one record (architecture §6.4): ``rp.status`` (its subject the
relying party, its payload the number of serials asked), ``rp.linkage`` and ``basic4.provided``
(the relying party in the payload), and ``rp.refused`` for a call refused whatever refused it
(the route as its subject; the relying party when it was known). A refusal before the relying
party was known (no or bad credentials) is nobody's usage and is not counted here; the
``jpki_rp_calls_total`` metric counts it under ``none``. Only identifiers and counts are read:
no payload holds personal data (§9.7).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from jpki.access.principals import RP_SCOPES
from jpki.model import AuditRecord

# The action of an answered call, and the scope it used.
_ANSWERED = {"rp.status": "status", "rp.linkage": "linkage", "basic4.provided": "basic4"}
# A refused call's route (api.rp_audit), and the scope it asked for.
_ROUTES = {"POST /v1/status": "status", "POST /v1/linkage": "linkage",
           "POST /v1/basic4": "basic4"}
ACTIONS = (*_ANSWERED, "rp.refused")


@dataclass(frozen=True)
class Use:
    relying_party: str
    scope: str  # one of RP_SCOPES
    answered: bool
    items: int  # serials asked in a status call; 1 for a linkage or a basic 4 answer


def use_of(record: AuditRecord) -> Use | None:
    """The use ``record`` describes, or None for a record that is no relying party's call."""
    scope = _ANSWERED.get(record.action)
    refused = record.action == "rp.refused"
    if scope is None and not refused:
        return None
    try:
        payload = json.loads(record.payload)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    if refused:
        scope = _ROUTES.get(record.subject)
        party = payload.get("relying_party")
    elif record.action == "rp.status":
        party = record.subject
    else:
        party = payload.get("relying_party")
    if scope not in RP_SCOPES or not isinstance(party, str) or not party:
        return None
    count = payload.get("count") if record.action == "rp.status" else 1
    items = count if isinstance(count, int) and count >= 0 else 0
    return Use(relying_party=party[:32], scope=scope, answered=not refused,
               items=0 if refused else items)
