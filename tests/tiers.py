"""The fakes-only tier (-m "not integration and not postgres and not browser") starts no server: the autouse
fixture here (imported by tests/conftest.py) fails a test of that tier that listens on a TCP socket. Kept
apart from conftest.py, which imports rag, so tests/test_tiers.py can load it alone in a child pytest."""
from __future__ import annotations

import socket

import pytest

TIERS_BEYOND_FAKES = ("integration", "postgres", "browser")


@pytest.fixture(autouse=True)
def fakes_start_no_server(request, monkeypatch):
    """In the fakes-only tier a TCP socket that listens fails the test (after it ran, so a server in a
    thread does not hang it): the tier starts no server, and a test that serves HTTP on 127.0.0.1, even over
    fakes, carries `integration`. Unix sockets (multiprocessing's own) are allowed."""
    if any(request.node.get_closest_marker(m) for m in TIERS_BEYOND_FAKES):
        yield
        return
    listen, seen = socket.socket.listen, []

    def watched(sock, *args):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            seen.append(sock.getsockname())
        return listen(sock, *args)

    monkeypatch.setattr(socket.socket, "listen", watched)
    yield seen
    if seen:
        pytest.fail(f"{request.node.nodeid} listened on {seen[0]}: it starts a server, so mark it integration "
                    "(the fakes-only tier starts none)", pytrace=False)
