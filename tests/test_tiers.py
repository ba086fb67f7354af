"""The test tiers: the fakes-only tier (-m "not integration and not postgres and not browser") starts no
server, which tests/tiers.py (through tests/conftest.py) enforces by failing any of its tests that opens a
listening TCP socket."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def test_a_fakes_only_test_that_listens_on_tcp_fails_naming_the_marker(pytester, monkeypatch):
    """In a child pytest (in-process, its listening socket would count against this test too)."""
    root = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    pytester.makeconftest("from tests.tiers import fakes_start_no_server  # noqa: F401\n")
    pytester.makepyfile(test_probe="""
        import socket
        import pytest

        def test_serves():
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                sock.listen()

        @pytest.mark.integration
        def test_serves_marked():
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                sock.listen()

        def test_unix():
            import os, shutil, tempfile
            folder = tempfile.mkdtemp(dir="/tmp")  # a unix socket's path is at most 107 bytes
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.bind(os.path.join(folder, "s"))
                    sock.listen()
            finally:
                shutil.rmtree(folder)
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "markers=integration", "-o", "addopts=")
    result.assert_outcomes(passed=3, errors=1)  # test_serves itself passes; its teardown is the error
    result.stdout.fnmatch_lines(["*test_serves listened on ('127.0.0.1', *it starts a server, so mark it integration*"])


def test_this_test_may_bind_without_listening():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert sock.getsockname()[1] > 0
