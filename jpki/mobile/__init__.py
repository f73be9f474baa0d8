"""The smartphone certificates linked to a card: application, revocation, suspension and its
lifting.
"""
