"""Who may call the HTTP API (rag/app/api.py), and where `rag serve` may bind. The values come from the
settings api_key and auth (Settings, env RAG_API_KEY and RAG_AUTH); they are serving keys only, never
sent to a model server (that key is llm_api_key, RAG_LLM_API_KEY).

    RAG_API_KEY=k                   one key, no user (user None)
    RAG_API_KEY=alice=k1,bob=k2     a key per user: the key says who calls, and so which collections
                                    they see (all keys with a user, or one without: never mixed)
    RAG_AUTH=ann:pw (no API key)    the UI's logins also open the API: `Authorization: Bearer ann:pw`,
                                    so private collections are never served anonymously
    neither                         open (fine on 127.0.0.1; `rag serve` refuses other addresses)

Keys are compared in constant time, and never named in an error or the log.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from rag.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
_FORMAT = "write RAG_API_KEY=key, or user=key pairs separated by commas (RAG_API_KEY=alice=k1,bob=k2)"


class Unauthorized(Exception):
    """A missing or wrong key; the API answers 401."""


def parse_api_keys(value: str | None) -> dict[str, str | None]:
    """`RAG_API_KEY` -> {key: user}. An item `user=key` binds the key to a user; an item without `=`
    (or whose `=` are only base64 padding at the end) is a key of no user."""
    if value is None or not value.strip():
        return {}
    items = value.split(",")
    keys: dict[str, str | None] = {}
    for number, item in enumerate(items, start=1):
        item = item.strip()
        user, sep, key = item.partition("=")
        if not sep or not key.strip("="):
            user, key = "", item  # a plain key (perhaps ending in '=' padding)
        user, key = user.strip(), key.strip()
        if not key:
            raise ConfigError(f"RAG_API_KEY: item {number} of {len(items)} is empty; {_FORMAT}")
        if sep and not user and key != item:
            raise ConfigError(f"RAG_API_KEY: item {number} of {len(items)} has an empty user name; {_FORMAT}")
        if key in keys:
            raise ConfigError(f"RAG_API_KEY: item {number} of {len(items)} repeats an earlier key; each key "
                              "must name one user")
        keys[key] = user or None
    plain = [n for n, user in enumerate(keys.values(), start=1) if user is None]
    if plain and len(plain) < len(keys):  # a key of no user would see every user's private collection
        raise ConfigError(f"RAG_API_KEY: item {plain[0]} of {len(items)} has no user while others do; a key "
                          f"without a user sees every private collection, so give each key a user: {_FORMAT}")
    return keys


@dataclass(frozen=True)
class ApiAuth:
    """The accepted bearer tokens and the user each one stands for. No tokens: the API is open."""

    tokens: dict[str, str | None] = field(default_factory=dict)
    source: str = ""  # "RAG_API_KEY", "RAG_AUTH" or "" (open): named in the 401 message

    @classmethod
    def of(cls, api_key: str | None, logins: list[tuple[str, str]] | None) -> "ApiAuth":
        """RAG_API_KEY wins; else the RAG_AUTH logins as `user:password` tokens; else open."""
        keys = parse_api_keys(api_key)
        if keys and logins and None in keys.values():  # the UI has users: a key of none would see them all
            raise ConfigError("RAG_API_KEY has a key without a user while RAG_AUTH has logins; such a key would "
                              f"see every user's private collection, so give each key a user: {_FORMAT}")
        if keys:
            return cls(keys, "RAG_API_KEY")
        if logins:
            return cls({f"{user}:{password}": user for user, password in logins}, "RAG_AUTH")
        return cls()

    @property
    def required(self) -> bool:
        return bool(self.tokens)

    def user(self, authorization: str | None) -> str | None:
        """The user of an `Authorization` header's bearer token (None: a key of no user, or an open
        API). Raises Unauthorized for a missing or wrong token."""
        if not self.required:
            return None
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(f"missing API key: send the header 'Authorization: Bearer <key>' "
                               f"(the server takes its keys from {self.source})")
        given = token.strip().encode()
        found: tuple[bool, str | None] = (False, None)
        for key, user in self.tokens.items():  # every key compared, in constant time each
            if hmac.compare_digest(given, key.encode()):
                found = (True, user)
        if not found[0]:
            raise Unauthorized(f"wrong API key (the server takes its keys from {self.source})")
        return found[1]


def check_bind(host: str, ui_login: bool, api: ApiAuth, *, with_ui: bool) -> None:
    """Refuse to serve on an address other machines reach when a face served there has no login."""
    if host in LOOPBACK:
        return
    if with_ui and not ui_login:
        raise ConfigError(f"refusing to serve the web UI on {host} without a login: set RAG_AUTH=user:password, "
                          "or bind 127.0.0.1")
    if not api.required:
        raise ConfigError(f"refusing to serve the API on {host} without a key: set RAG_API_KEY (or RAG_AUTH), "
                          "or bind 127.0.0.1")
