"""A virtual JPKI card (reference §4, architecture §7) and its link to pcscd's vpcd reader."""

from jpki.card.emulator.card import JpkiCardEmulator
from jpki.card.emulator.state import CardState

__all__ = ["CardState", "JpkiCardEmulator"]
