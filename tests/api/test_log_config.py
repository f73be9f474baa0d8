"""The logging of `jpki serve` (api.logs) under a real uvicorn: an exception that escapes the
application — uvicorn logs it with its traceback — is a JSON line with its type and frames, and
the API's own line names the route's path template; no line holds a traceback, the exception's
text or the request's values.

The server runs in a subprocess: uvicorn configures logging for the whole process it runs in.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from api.in_process import free_port

REPO = Path(__file__).resolve().parents[2]
SECRET = "瀬戸内秘密"  # stands in for personal data an exception's text could quote

SERVER = f'''
import sys

import uvicorn
from fastapi import FastAPI

from api import problems
from api.logs import log_config

app = FastAPI()
problems.install(app)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {{"status": "ok"}}


@app.get("/v1/things/{{thing}}")
def fail(thing: str) -> None:
    raise LookupError("{SECRET} " + thing)


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=log_config(),
            access_log=False)
'''


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_an_unexpected_exception_is_logged_as_its_type_and_route(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER, encoding="utf-8")
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([sys.executable, str(script), str(port)], cwd=REPO,
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(f"http://127.0.0.1:{port}/healthz") == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        assert _get(f"http://127.0.0.1:{port}/v1/things/item-4711%0Aforged%00line") == 500
        time.sleep(0.5)  # uvicorn logs after the response is sent
    finally:
        server.terminate()
        server.wait(timeout=10)
    text = log_path.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # JSON, every one
    messages = [line["message"] for line in lines]
    assert "unexpected LookupError in GET /v1/things/{thing}" in messages, messages
    escaped = [line for line in lines if line.get("exception") == "builtins.LookupError"]
    assert escaped, lines  # uvicorn's "Exception in ASGI application": the type and frames
    assert all(isinstance(frame, str) for line in escaped for frame in line["stack"])
    assert "Traceback" not in text and 'File "' not in text, text
    assert SECRET not in text and "item-4711" not in text and "forged" not in text, text
