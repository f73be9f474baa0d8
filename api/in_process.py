"""The API served by uvicorn in a thread of the calling process, on a loopback port.

For tests and benchmarks that drive the CA through its own objects (a settable clock, services
built in the process) while real clients — openssl, pyhanko-certvalidator, a station — talk HTTP
to it. ``jpki serve`` is the way to run the service; this is not.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from api.composition import Services

START_TIMEOUT_SECONDS = 20


def free_port() -> int:
    """A loopback port nobody listens on now (the kernel's choice of an ephemeral one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def served_in_thread(services: Services, port: int) -> Iterator[str]:
    """Serve ``services`` on 127.0.0.1:``port`` until the block ends; yields the base URL."""
    import uvicorn

    from api.app import create_app

    app = create_app(services.settings, services=services)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True, name=f"uvicorn:{port}")
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
