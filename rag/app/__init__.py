"""The faces: the command line (`rag`), the Gradio web UI and the OpenAI-compatible HTTP API. Only these
turn errors into user text: print, catch RagError as such, show a message.

May import: anything in rag (the top floor). Nothing in rag imports rag.app (tests/test_layout.py)."""
