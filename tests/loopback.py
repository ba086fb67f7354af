"""An ASGI app really served by uvicorn on 127.0.0.1, in a thread, for the tests that need a real server."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def served(app) -> Iterator[int]:
    """Serve `app` on a free loopback port; yields the port, and stops the server on the way out."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # open UI connections (Gradio's heartbeat stream) would hold a graceful shutdown
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not uv.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield sock.getsockname()[1]
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert not thread.is_alive()
