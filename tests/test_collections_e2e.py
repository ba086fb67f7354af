"""Collections with the real models behind a real launched Gradio server with a login for two users,
driven by gradio_client logged in as each: alice's private fact is answered for alice only."""
from __future__ import annotations

import pytest

from rag.collections import Collections

pytestmark = pytest.mark.integration

FACT = ("# Harbour notes\n\nThe Zorblax vault in Port Quenby is opened with the code 4417. "
        "The harbour master Ilse Marrow chose that code in 1999.\n")
QUESTION = "What is the code that opens the Zorblax vault in Port Quenby?"


def test_private_fact_answered_for_alice_only(real_rag, tmp_path):
    pytest.importorskip("gradio")
    gradio_client = pytest.importorskip("gradio_client")
    from rag.app import ui

    # the session's real RAG (MiniLM, the default GGUF model) is `default`; its model is the only one loaded
    collections = Collections(real_rag.settings.with_(collections_dir=tmp_path / "collections"), default=real_rag)
    note = tmp_path / "harbour-notes.md"
    note.write_text(FACT, encoding="utf-8")
    report = collections.open("private-alice", "alice").add([note])
    assert len(report.added) == 1
    demo = ui.build_app(collections)
    ui.launch(demo, "127.0.0.1", None, block=False, quiet=True, auth=ui.parse_auth("alice:pw-a,bob:pw-b"))
    try:
        alice = gradio_client.Client(demo.local_url, auth=("alice", "pw-a"), verbose=False)
        bob = gradio_client.Client(demo.local_url, auth=("bob", "pw-b"), verbose=False)
        got = alice.predict(QUESTION, 3, None, "private-alice", api_name="/ask")
        assert "4417" in got["answer"] and not got["abstained"], got["answer"]
        assert got["citations"] and got["citations"][0]["source"].endswith("harbour-notes.md")
        for collection in (None, "private-bob"):
            theirs = bob.predict(QUESTION, 3, None, collection, api_name="/ask")
            assert theirs["abstained"] and "4417" not in str(theirs), theirs
        with pytest.raises(Exception) as err:
            bob.predict(QUESTION, 3, None, "private-alice", api_name="/ask")
        assert "no collection 'private-alice'; yours: default, private-bob" in str(err.value)
        assert "4417" not in str(err.value)
    finally:
        demo.close()
    assert real_rag.llm is collections.open("private-alice", "alice").llm  # one model for both
