"""The card side (reference §4; architecture §2, §7): APDU codec, JPKI-AP client, transports
and the card emulator.

An adapter package: only :mod:`devices.card.pcsc` imports pyscard (``smartcard``), and nothing here
imports it at package import time, so the codec, the client and the emulator work without PC/SC.
"""
