"""A reference smartphone: the holder's app for mobile certificates (reference §2).

Its secure element is a JPKI-AP token — the card emulator with the phone's token label
(``JPKIAPGPSETOKEN`` for Android, ``JPKIAPIOSTOKEN`` for iPhone) and a state file — so keys are
generated inside it and never leave, and a relying party reads and uses the phone exactly like a
card (``jpki-card emulate --state phone.json`` puts it behind a PC/SC reader, as real phones
present themselves to JPKI apps).
"""
