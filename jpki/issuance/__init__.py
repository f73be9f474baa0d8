"""Issuance: request → intent → signed → stored, with a planner per product."""
