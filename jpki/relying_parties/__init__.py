"""Relying parties: registration, consents, status lookups, linkage and the latest basic 4
information.
"""
