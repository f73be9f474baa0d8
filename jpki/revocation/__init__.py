"""Revocation status: the operator's revocation, CRL shards, the OCSP responder."""
