"""What the live benches need to measure a reader honestly (issues #12, #13): a client in a process of its own, and
a bare process serving the same bytes under the same load (the floor).

A live bench generates and encodes its background traffic (thousands of events a second) in a thread of the bench
process. A client in that process measures its own wait for the GIL along with the server's answer: issue #12 found
GET /sales p99 dominated by it. So the clients run in a fresh interpreter (:func:`run_in_process`), and
:class:`BareServer` answers fixed bytes on the same routes with nothing else in its process: what this machine,
under the same load, leaves any reader however it is built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from salepulse.deploy.kafka.local_broker import free_port

_CALL = ("import importlib, json, sys; module, name = sys.argv[1].split(':'); "
         "result = getattr(importlib.import_module(module), name)(*json.loads(sys.argv[2])); "
         "open(sys.argv[3], 'w').write(json.dumps(result))")


def run_in_process(target: str, *args: Any, timeout: float, env: dict[str, str] | None = None) -> Any:
    """``module:function(*args)`` called in a fresh interpreter; its JSON-able result (arguments too are JSON).

    The result travels in a file, not on stdout, which the function's logs may share.

    >>> run_in_process("operator:add", 2, 3, timeout=60)
    5
    """
    with tempfile.TemporaryDirectory(prefix="salepulse-client-") as folder:
        out = Path(folder) / "result.json"
        done = subprocess.run([sys.executable, "-c", _CALL, target, json.dumps(args), str(out)], env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{target} failed in its own process ({done.returncode}): {done.stderr[-2000:]}")
        return json.loads(out.read_text())


def serve_bytes(port: int, routes_file: str) -> None:
    """Answer ``GET`` on each route (an aiohttp pattern, as the worker routes it) with the bytes of its file, until
    killed: the bare reader. ``routes_file``: JSON {pattern: path of the body}."""
    from aiohttp import web

    app = web.Application()
    for pattern, path in json.loads(Path(routes_file).read_text()).items():
        body = Path(path).read_bytes()

        async def answer(_request: web.Request, body: bytes = body) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        app.router.add_get(pattern, answer)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


class BareServer:
    """A process of its own serving ``bodies`` ({aiohttp route pattern: bytes}); ``with`` it: listening on
    :attr:`port` once entered (``check_path`` answers 200), stopped on exit."""

    def __init__(self, bodies: dict[str, bytes], check_path: str, state_dir: Path, timeout: float = 60.0) -> None:
        self.bodies, self.check_path, self.state_dir, self.timeout = bodies, check_path, state_dir, timeout
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> BareServer:
        folder = Path(tempfile.mkdtemp(prefix="bare-", dir=self.state_dir))
        routes = {}
        for n, (pattern, body) in enumerate(self.bodies.items()):
            (folder / f"{n}.body").write_bytes(body)
            routes[pattern] = str(folder / f"{n}.body")
        (folder / "routes.json").write_text(json.dumps(routes))
        code = ("import sys; from salepulse.streams.tools.bench_clients import serve_bytes; "
                "serve_bytes(int(sys.argv[1]), sys.argv[2])")
        self.process = subprocess.Popen([sys.executable, "-c", code, str(self.port), str(folder / "routes.json")])
        deadline = time.monotonic() + self.timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the bare process did not answer {self.check_path} on port {self.port}")
            time.sleep(0.2)
        return self

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}{self.check_path}", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, 9)
                self.process.wait()
