"""bench.scale's runner: which measurements a run makes."""

from __future__ import annotations

import pytest

from bench.scale import MEASUREMENTS, ON_REQUEST, selected


def test_a_default_run_makes_every_measurement_but_the_parts_of_jobs():
    names = [m[0] for m in selected(None)]
    assert names == [m[0] for m in MEASUREMENTS if m[0] not in ON_REQUEST]
    assert "jobs" in names and not set(names) & {"expiry", "wave"}


def test_named_measurements_run_alone_in_their_order():
    assert [m[0] for m in selected({"wave", "expiry"})] == ["expiry", "wave"]
    with pytest.raises(ValueError, match="no measurement bogus"):
        selected({"bogus"})
