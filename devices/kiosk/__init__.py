"""The convenience-store kiosk of the signing-password reset (architecture §7.1)."""
