"""Rules every context applies to certificates: revocation transitions and their one writer, CRL
entries, the audited state.
"""
