"""The reference holder app of the signing-password reset (architecture §7.1)."""
