"""A virtual JPKI card (reference §4, architecture §7) and its link to pcscd's vpcd reader."""

from devices.card.emulator.card import JpkiCardEmulator
from devices.card.emulator.state import CardState

__all__ = ["CardState", "JpkiCardEmulator"]
