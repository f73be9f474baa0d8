"""What devices and the CA exchange: the signed documents and the CMS helpers both sides use.

- ``cms``: the CMS SignedData a holder's card or phone makes, and its verification;
- ``documents``: the form every signed document shares (strict ``parse``, canonical ``to_json``);
- ``mobile``: the phone's documents (application, revocation, check-in, suspension lift) and the
  proof-of-possession message;
- ``consent``: a holder's consent for a relying party, and its withdrawal.

It imports only the standard library, cryptography, asn1crypto and jpki.errors, so the devices
(``devices/``) can share it without the rest of the core (architecture §2.3).
"""
