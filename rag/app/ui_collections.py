"""The web UI's view of collections for one request: who is asking (from `gr.Request`, never from a value
the client sends), which collection they may open, and where their uploads go (rag/collections.py)."""
from __future__ import annotations

from typing import Any

from rag.collections import Collections, private_name
from rag.pipeline import RAG


def user_of(request: Any) -> str | None:
    """The logged-in user of this call (None without a login). A handler that was not given the
    request is a wiring bug: fail closed rather than serve it as "no login", which sees everything."""
    if request is None:
        raise RuntimeError("the UI handler got no gr.Request, so the user is unknown")
    return getattr(request, "username", None) or None


def open_for(collections: Collections, name: str | None, request: Any) -> tuple[RAG, str]:
    """The RAG of collection `name` (default: the user's first) for the user of `request`, and its
    name; InputError if the user may not see it."""
    user = user_of(request)
    name = name or collections.names(user)[0]
    return collections.open(name, user), name


def upload_target(collections: Collections, name: str | None, user: str | None) -> str:
    """Where an upload goes: the chosen collection if the user may add to it, else their private one."""
    name = name or collections.names(user)[0]
    if user is None or (collections.can_write(name, user) and name in collections.names(user)):
        return name
    return private_name(user)


def collection_outputs(collections: Collections, wanted: str | None, user: str | None) -> tuple[list[str], str, str]:
    """The picker's choices for `user`, the chosen one (`wanted` if they may see it, else their first),
    and a note on where their documents go."""
    names = collections.names(user)
    name = wanted if wanted in names else names[0]
    if collections.can_write(name, user):
        note = ""
    else:
        note = f" (shared, read-only for you: uploads go to {private_name(user)})"  # type: ignore[arg-type]
    return names, name, note


def admin_note(collections: Collections, user: str | None) -> tuple[bool, str]:
    """Whether `user` may take the global actions (the model, shared collections), and if not, the
    note saying why their controls are disabled."""
    if collections.is_admin(user):
        return True, ""
    return False, ('<div class="rag-muted" id="rag-admin-only">Only an admin (setting admin_users) may switch the '
                   "model or create and delete shared collections: they change what everyone sees.</div>")


def with_request(fn):
    """Gradio hands the request to a parameter annotated `gr.Request`; annotations in the UI modules are
    strings (from __future__) and gradio is not imported at their top, so set the real class."""
    import gradio as gr

    fn.__annotations__["request"] = gr.Request
    return fn
