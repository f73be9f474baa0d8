"""Residents, cards, the counter and identity proofing: the records certificates are issued for."""
