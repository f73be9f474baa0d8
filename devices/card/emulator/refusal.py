"""How a command handler refuses: raise :class:`Refused` with the status word; nothing changed."""

from __future__ import annotations


class Refused(Exception):
    """A handler's refusal: the status word to answer, nothing changed."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw
