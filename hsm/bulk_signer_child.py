"""The bulk signing process's entry point: ``python -m hsm.bulk_signer_child`` (started by
:class:`hsm.bulk_signer.BulkSigner`, never by hand). A module of its own so that running it does
not execute a module the package has already imported."""

from __future__ import annotations

import contextlib
import sys

from hsm.bulk_signer import serve

if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        # BrokenPipeError: the parent went away while we answered.
        serve(sys.stdin.buffer, sys.stdout.buffer)
