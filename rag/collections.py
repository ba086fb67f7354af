"""Named collections: one index directory per name, so a user keeps separate corpora (work, personal, one
per project), and with a login each user's uploads stay private.

    default                 the existing default index (`settings.index_dir`, seeded from seeds/)
    <collections_dir>/NAME  every other collection (`rag ingest --collection NAME` creates one)

Every collection opened here shares one embedder and one LLM (loaded once, on the first question, and
one generation at a time across collections). `Collections` is what the faces need (`names`, `open`):

Who sees what. `user` is the logged-in user's name, None when there is no login:
* no login (a single-user machine): every collection is visible and writable;
* a logged-in user: the shared collections (`shared_collections`, default first) that exist, plus their
  own private collection `private-<user>` (created empty on first use); nobody else's private one, and
  no other collection. Only `admin_users` may add to or delete from a shared one. Asking for a
  collection one may not see fails exactly as for one that does not exist, so a user cannot learn
  that another user's private collection exists.

Global actions are for admins (`is_admin`: a user in `admin_users`, or anyone without a login):
switching the model everyone uses (`use_model`), creating a shared collection (`create_shared`: beside
those of the setting `shared_collections`, it is marked shared by a file `SHARED_MARK` in its folder, so
it stays shared after a restart) and removing one (`remove`). Anyone else gets NotAllowed saying so.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from llama_index.core.llms import LLM

from rag.config import COLLECTION_NAME, Settings
from rag.errors import ConfigError, InputError, NotAllowed, shown
from rag.models.embedding import Embedder, build_embedder
from rag.models.model_lock import ModelLock
from rag.pipeline import RAG
from rag.store.faiss_index import IndexStore

DEFAULT = "default"
PRIVATE_PREFIX = "private-"
SHARED_MARK = "shared"  # a file in a collection's folder: created shared by an admin (create_shared)
NAME_RULE = (f"a collection name is 1 to 64 letters, digits, '_' or '-', starting with a letter or digit "
             f"({COLLECTION_NAME})")
_NAME = re.compile(COLLECTION_NAME)
_PLAIN_USER = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    documents: int
    chunks: int
    directory: Path


def check_name(name: object) -> str:
    """`name` if it is a valid collection name, else an InputError naming the rule."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputError(f"bad collection name {shown(name)}: {NAME_RULE}")
    return name


def private_name(user: str) -> str:
    """The private collection of `user`: private-<user> for a plain lower-case name, else a safe form
    of it with a hash of the exact name (so 'Bob' and 'bob' never share one)."""
    if _PLAIN_USER.fullmatch(user):
        return PRIVATE_PREFIX + user
    safe = re.sub(r"[^a-z0-9_-]+", "_", user.lower()).strip("_-")[:40] or "user"
    return f"{PRIVATE_PREFIX}{safe}-{hashlib.sha256(user.encode('utf-8')).hexdigest()[:8]}"


class Collections:
    """The collections on this machine, each opened once (cached per name) over one embedder and LLM.
    Implements the CollectionProvider the UI and the HTTP API use: `names(user)`, `open(name, user)`."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None, llm: LLM | None = None,
                 default: RAG | None = None) -> None:
        """`default`: an already open RAG to serve as the `default` collection (its settings, embedder
        and model are then shared by the others)."""
        self.settings = settings.with_(index_dir=default.settings.index_dir) if default is not None else settings
        self._embedder = default.embedder if default is not None else embedder
        self._llm, self._llm_model = llm, (self.settings.model if llm is not None else None)
        self._default = default
        # One generation at a time over the shared model, whichever collection asks.
        self.llm_lock: ModelLock = default._llm_lock if default is not None else ModelLock()  # noqa: SLF001
        self._rags: dict[str, RAG] = {DEFAULT: default} if default is not None else {}
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()

    # -- where they are -----------------------------------------------------------------------------
    def directory(self, name: str) -> Path:
        name = check_name(name)
        if name != DEFAULT and self.settings.store:  # a second collection there would share the one index
            raise ConfigError(f"collection {name!r} needs an index of its own, but the PostgreSQL store holds one "
                              "index per database (setting store); only 'default' can be used with it, or use "
                              "the FAISS store (store empty) for collections")
        return Path(self.settings.index_dir) if name == DEFAULT else Path(self.settings.collections_dir) / name

    def existing(self) -> list[str]:
        """Every collection on disk, default first (default even before its first use: it is seeded)."""
        root = Path(self.settings.collections_dir)
        found = sorted(p.name for p in root.iterdir()
                       if p.name != DEFAULT and _NAME.fullmatch(p.name) and IndexStore.exists(p)) if root.is_dir() else []
        return [DEFAULT, *found]

    def exists(self, name: str) -> bool:
        return name == DEFAULT or name in self._rags or IndexStore.exists(self.directory(name))

    # -- who may see and change what ----------------------------------------------------------------
    def shared_names(self) -> list[str]:
        """The shared collections: those of the setting `shared_collections`, then those an admin
        created (marked in their folder), whether they exist yet or not."""
        root = Path(self.settings.collections_dir)
        marked = sorted(p.name for p in root.iterdir() if _NAME.fullmatch(p.name) and (p / SHARED_MARK).is_file()
                        and not p.name.startswith(PRIVATE_PREFIX)) if root.is_dir() else []
        return list(dict.fromkeys([*self.settings.shared_collection_names, *marked]))

    def names(self, user: str | None) -> list[str]:
        """The collections `user` may see, default first."""
        if user is None:
            return self.existing()
        shared = [n for n in self.shared_names() if self.exists(n)]
        shared.sort(key=lambda n: n != DEFAULT)
        return [*shared, private_name(user)]

    def is_admin(self, user: str | None) -> bool:
        """Whether `user` may take the global actions (no login: the one user is)."""
        return user is None or user in self.settings.admin_user_names

    def require_admin(self, user: str | None, action: str) -> None:
        if not self.is_admin(user):
            raise NotAllowed(f"only an admin may {action} (setting admin_users); {shown(user)} is not one")

    def can_write(self, name: str, user: str | None) -> bool:
        """Whether `user` may add to or delete from `name` (which they may see)."""
        if user is None:
            return True
        return name == private_name(user) or (self.is_admin(user) and name in self.shared_names())

    def writable(self, name: str, user: str | None) -> str:
        """`name` if `user` may see and change it, else an InputError saying which one they may change."""
        self._check_visible(name, user)
        if not self.can_write(name, user):
            raise InputError(f"collection {name!r} is shared and read-only for you; "
                             f"add or delete documents in your own collection {private_name(user)!r}")  # type: ignore[arg-type]
        return name

    def _check_visible(self, name: str, user: str | None) -> str:
        name = check_name(name)
        visible = self.names(user)
        if name not in visible:
            raise InputError(f"no collection {shown(name)}; {'yours' if user is not None else 'existing'}: "
                             f"{', '.join(visible)}")
        return name

    # -- opening ------------------------------------------------------------------------------------
    def open(self, name: str, user: str | None = None) -> RAG:
        """The RAG of collection `name`, opened once and cached. Unknown or not visible to `user`:
        InputError("no collection 'x'; yours: a, b"), the same either way. A user's own private
        collection is created (empty) the first time it is opened."""
        self._check_visible(name, user)
        return self._open(name)

    def create(self, name: str, user: str | None = None) -> RAG:
        """Open `name`, creating it (empty) if it does not exist. A logged-in user may create only what
        they may change (their private collection; a shared one if they are an admin)."""
        name = check_name(name)
        if user is not None:
            self.writable(name, user)
        return self._create(name)

    def _create(self, name: str) -> RAG:
        rag = self._open(name)
        if not rag.store.persisted:  # on disk at once, so every process lists it
            with rag.store.writing():
                rag.store.save()
        return rag

    def create_shared(self, name: str, user: str | None) -> RAG:
        """A new shared collection `name` (empty), which every user sees; admins only."""
        self.require_admin(user, "create a shared collection")
        name = check_name(name)
        if name.startswith(PRIVATE_PREFIX):
            raise InputError(f"bad collection name {shown(name)}: names starting with {PRIVATE_PREFIX!r} are "
                             "each user's own")
        if self.exists(name):
            raise InputError(f"collection {shown(name)} exists already")
        directory = self.directory(name)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SHARED_MARK).write_text("created shared by an admin (rag/collections.py)\n", encoding="utf-8")
        return self._create(name)

    def remove(self, name: str, user: str | None) -> None:
        """Delete the shared collection `name`, its index and uploads; admins only. Not `default`, and
        not a user's private one."""
        self.require_admin(user, "delete a shared collection")
        name = check_name(name)
        if name == DEFAULT or name not in self.shared_names() or not self.exists(name):
            raise InputError(f"no shared collection {shown(name)} to delete; shared: "
                             f"{', '.join(n for n in self.shared_names() if n != DEFAULT and self.exists(n)) or 'none but default'}"
                             " (default cannot be deleted)")
        with self._lock:
            rag = self._open(name)
            with rag.store.writing():  # no writer of this process or another is in the middle of a save
                shutil.rmtree(rag.store.directory)
            del self._rags[name]

    def _open(self, name: str) -> RAG:
        with self._lock:
            rag = self._rags.get(name)
            if rag is None:
                settings = self.settings.with_(index_dir=self.directory(name))
                rag = RAG.open(settings=settings, embedder=self.embedder, seed=None if name == DEFAULT else False,
                               llm_source=self._llm_for, llm_lock=self.llm_lock)
                self._rags[name] = rag
            return rag

    @property
    def embedder(self) -> Embedder:
        with self._load_lock:
            if self._embedder is None:
                self._embedder = build_embedder(self.settings)
            return self._embedder

    def _llm_for(self, settings: Settings) -> LLM:
        """The one model every collection uses (loaded on the first question; again after use_model)."""
        with self._load_lock:
            if self._llm is None or self._llm_model != settings.model:
                if self._default is not None and self._default.settings.model == settings.model:
                    self._llm = self._default.llm
                else:
                    from rag.models.llm import build_llm

                    self._llm = build_llm(settings)
                self._llm_model = settings.model
            return self._llm

    def use_model(self, model: str, user: str | None = None) -> None:
        """Switch the model of every collection (it loads once, on the next question); admins only."""
        self.require_admin(user, "switch the model, which changes it for everyone")
        settings = self.settings.with_(model=model)  # validates the name
        with self._lock:
            self.settings = settings
            for rag in self._rags.values():
                rag.use_model(model)

    # -- what is in them ----------------------------------------------------------------------------
    def infos(self, user: str | None = None) -> list[CollectionInfo]:
        """Name, documents and chunks of each collection `user` may see, read from disk (no model)."""
        out = []
        for name in self.names(user):
            docs, chunks = self._counts(name)
            out.append(CollectionInfo(name, docs, chunks, self.directory(name)))
        return out

    def _counts(self, name: str) -> tuple[int, int]:
        rag = self._rags.get(name)
        if rag is not None:
            docs = rag.documents()
            return len(docs), sum(d.chunks for d in docs)
        return IndexStore.stored_counts(self.directory(name))
