"""Client registration (jpki.access.clients): what a client's name may be."""

from __future__ import annotations

import pytest

from api.composition import Services
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.errors import InvalidInput
from jpki.model import ClientRole

pytestmark = pytest.mark.hsm

CREATE_CLIENT = authorize(Principal.local_operator("pytest"), Operation.CLIENT_CREATE)


@pytest.mark.parametrize("name", ["desk\n", "desk\r\n", "", "a" * 101, "desk\x00", "desk;drop"])
def test_a_client_name_outside_its_alphabet_is_refused_and_nothing_is_created(
        services: Services, name: str) -> None:
    with services.uow() as uow:
        before = len(list(uow.clients.all()))
    with pytest.raises(InvalidInput) as refused:
        services.clients.create(CREATE_CLIENT, name=name, role=ClientRole.STATION)
    assert refused.value.context["field"] == "name"
    with services.uow() as uow:
        assert len(list(uow.clients.all())) == before


def test_a_client_name_in_its_alphabet_is_kept_as_given(services: Services) -> None:
    made = services.clients.create(CREATE_CLIENT, name="Kiyose counter (2)",
                                   role=ClientRole.STATION)
    assert made.client.name == "Kiyose counter (2)"
