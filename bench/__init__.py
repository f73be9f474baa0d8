"""Benchmarks: commands that print figures and ratios against a baseline measured in the same run.

Run them as modules, e.g. ``.venv/bin/python -m bench.issuance --help``. Results, with the command
that produced them, go into docs/performance.md; no test asserts a timing.
"""
