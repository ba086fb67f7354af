"""Collections with fakes: names, where each lives, opening once over one model, and who sees what."""
from __future__ import annotations

import pytest

from rag.collections import DEFAULT, Collections, check_name, private_name
from rag.errors import ConfigError, InputError, shown
from rag.testing import FakeEmbedder, FakeLLM

FACT = "The Zorblax vault code of Quenby harbour is 4417."


@pytest.fixture
def make_collections(settings):
    def make(**changes) -> Collections:
        return Collections(settings.with_(**changes), embedder=FakeEmbedder(), llm=FakeLLM(["Not in the documents."]))

    return make


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["default", "work", "a", "Team_2-x", "x" * 64, "9lives"])
def test_valid_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "_x", "a b", "../etc", "a/b", "x" * 65, "é", ".hidden", None, 3])
def test_bad_names_name_the_rule(name):
    with pytest.raises(InputError) as err:
        check_name(name)
    assert shown(name) in str(err.value) and "[A-Za-z0-9][A-Za-z0-9_-]{0,63}" in str(err.value)


def test_a_long_name_is_cut_short_in_the_error():
    with pytest.raises(InputError) as err:
        check_name("x" * 100_000)
    assert len(str(err.value)) < 300 and "x" * 64 + "…" in str(err.value)


def test_private_names_are_valid_and_distinct():
    assert private_name("alice") == "private-alice"
    odd = ["Alice", "ALICE", "bob@example.com", "../../x", "名前", "a" * 200, " "]
    names = {private_name(u) for u in ["alice", *odd]}
    assert len(names) == 1 + len(odd)  # Bob and bob never share one
    for n in names:
        assert check_name(n).startswith("private-")


def test_default_is_the_index_dir_and_others_live_under_collections_dir(make_collections, settings):
    c = make_collections()
    assert c.directory(DEFAULT) == settings.index_dir
    assert c.directory("work") == settings.collections_dir / "work"
    assert c.existing() == [DEFAULT]


def test_create_is_explicit_and_open_names_the_existing_ones(make_collections, tmp_path):
    c = make_collections()
    with pytest.raises(InputError, match=r"^no collection 'work'; existing: default$"):
        c.open("work")
    with pytest.raises(InputError, match="bad collection name"):
        c.create("../work")
    rag = c.create("work")
    rag.add([write(tmp_path, "a.md", FACT)])
    assert c.existing() == [DEFAULT, "work"]
    assert (c.directory("work") / "manifest.json").is_file()
    # a second Collections over the same folders finds it on disk
    again = make_collections()
    assert [d.source for d in again.open("work").documents()] == [str(tmp_path / "a.md")]
    assert again.open("work").documents()[0].id == rag.documents()[0].id


def test_opened_once_sharing_one_embedder_model_and_lock(make_collections):
    c = make_collections()
    work, home = c.create("work"), c.create("home")
    assert c.open("work") is work and c.open(DEFAULT) is c.open(DEFAULT)
    assert work.embedder is home.embedder is c.open(DEFAULT).embedder
    assert work.llm is home.llm is c.open(DEFAULT).llm
    assert work._llm_lock is home._llm_lock is c.llm_lock  # one generation at a time over the shared model


def test_model_is_built_once_for_all_collections(monkeypatch, settings):
    import rag.models.llm

    built = []
    monkeypatch.setattr(rag.models.llm, "build_llm", lambda s: built.append(s.model) or FakeLLM())
    c = Collections(settings, embedder=FakeEmbedder())
    llms = {id(c.create(n).llm) for n in ("a", "b", DEFAULT)}
    assert len(llms) == 1 and built == [settings.model]
    c.use_model("smollm2-135m")
    llms = {id(c.open(n).llm) for n in ("a", "b", DEFAULT)}
    assert len(llms) == 1 and built == [settings.model, "smollm2-135m"]
    with pytest.raises(ConfigError, match="nope"):
        c.use_model("nope")


def test_collections_keep_their_documents_apart(make_collections, tmp_path):
    c = make_collections()
    c.create("work").add([write(tmp_path, "vault.md", FACT)])
    c.create("home").add([write(tmp_path, "garden.md", "The tomatoes in the garden ripen in August.")])
    assert [p.chunk.source.endswith("vault.md") for p in c.open("work").retrieve("vault code")] == [True]
    assert all("vault" not in p.chunk.text for p in c.open("home").retrieve("vault code"))
    infos = {i.name: (i.documents, i.chunks) for i in c.infos()}
    assert infos == {DEFAULT: (0, 0), "work": (1, 1), "home": (1, 1)}
    # counted from disk too, without opening anything
    assert {i.name: (i.documents, i.chunks) for i in make_collections().infos()} == infos


# --------------------------------------------------------------------------- privacy


def test_without_a_login_everything_is_visible_and_writable(make_collections):
    c = make_collections()
    for n in ("private-alice", "team", "work"):
        c.create(n)
    assert c.names(None) == [DEFAULT, "private-alice", "team", "work"]
    assert all(c.can_write(n, None) for n in c.names(None))


def test_each_user_sees_shared_plus_their_own_private(make_collections):
    c = make_collections(shared_collections="team,default", admin_users="root")
    for n in ("team", "work", "private-bob"):
        c.create(n)
    assert c.names("alice") == [DEFAULT, "team", "private-alice"]
    assert c.names("bob") == [DEFAULT, "team", "private-bob"]
    assert c.open("private-alice", "alice") is not c.open("private-bob", "bob")
    # another user's private collection, a non-shared one and an unknown one fail alike
    messages = set()
    for name in ("private-bob", "work", "nosuch"):
        with pytest.raises(InputError) as err:
            c.open(name, "alice")
        messages.add(str(err.value).replace(repr(name), "X"))
    assert messages == {"no collection X; yours: default, team, private-alice"}
    with pytest.raises(InputError, match="no collection 'private-bob'"):
        c.create("private-bob", "alice")


def test_shared_collections_are_read_only_except_for_admins(make_collections):
    c = make_collections(shared_collections="default,team", admin_users="root")
    c.create("team")
    assert not c.can_write(DEFAULT, "alice") and not c.can_write("team", "alice")
    assert c.can_write("private-alice", "alice")
    assert c.can_write("team", "root") and c.can_write(DEFAULT, "root")
    assert not c.can_write("private-alice", "root")  # admins do not get other users' collections
    with pytest.raises(InputError, match="'team' is shared and read-only for you; .*'private-alice'"):
        c.writable("team", "alice")
    with pytest.raises(InputError, match="no collection 'private-alice'"):
        c.writable("private-alice", "root")
    assert c.writable("team", "root") == "team"


def test_a_missing_shared_collection_is_not_listed(make_collections):
    c = make_collections(shared_collections="default,team")
    assert c.names("alice") == [DEFAULT, "private-alice"]
    assert c.open("private-alice", "alice").documents() == []


def test_wrapping_an_open_rag_as_default(make_rag):
    rag = make_rag("Not in the documents.")
    c = Collections(rag.settings, default=rag)
    assert c.open(DEFAULT) is rag
    other = c.create("other")
    assert other.embedder is rag.embedder and other.llm is rag.llm and other._llm_lock is rag._llm_lock


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    from rag.app import cli
    from rag.pipeline import RAG

    llm = FakeLLM(["The vault code is 4417 [1]."])
    monkeypatch.setattr(cli, "_open", lambda s: RAG.open(settings=s.with_(min_score=0.1, context="chunk"),
                                                         embedder=FakeEmbedder(), llm=llm, seed=False))
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("RAG_COLLECTIONS_DIR", str(tmp_path / "collections"))
    return cli


def test_cli_collection_is_created_by_ingest_only(cli_env, tmp_path, capsys):
    cli = cli_env
    doc = write(tmp_path, "vault.md", FACT)
    assert cli.main(["ask", "What is the vault code?", "--collection", "work"]) == cli.EXIT_ERROR
    assert "error: no collection 'work'; existing: default" in capsys.readouterr().err
    assert cli.main(["ingest", str(doc), "--collection", "work"]) == 0
    out = capsys.readouterr()
    assert "new collection 'work'" in out.err and "added" in out.out
    assert (tmp_path / "collections" / "work" / "manifest.json").is_file()
    assert not (tmp_path / "index").exists()  # the default index was not touched
    assert cli.main(["list", "--collection", "work"]) == 0
    assert "vault.md" in capsys.readouterr().out
    assert cli.main(["ask", "--json", "What is the vault code?", "--collection", "work"]) == 0
    assert "vault.md" in capsys.readouterr().out
    assert cli.main(["collections"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["default", "0", "documents", "0", "chunks"]
    assert lines[1].split()[:5] == ["work", "1", "documents", "1", "chunks"]
    assert lines[-1] == "2 collection(s)"


def test_cli_collection_bad_name_and_index_together(cli_env, tmp_path, capsys):
    cli = cli_env
    assert cli.main(["ingest", str(tmp_path), "--collection", "../x"]) == cli.EXIT_ERROR
    assert "bad collection name '../x'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["list", "--collection", "work", "--index", str(tmp_path)])
    assert "not allowed with argument" in capsys.readouterr().err


def test_shared_collections_and_admins_from_the_environment(monkeypatch):
    from rag.config import Settings

    monkeypatch.setenv("RAG_SHARED_COLLECTIONS", " default, team ,")
    monkeypatch.setenv("RAG_ADMIN_USERS", "root,ops")
    s = Settings()
    assert s.shared_collection_names == ("default", "team") and s.admin_user_names == {"root", "ops"}
    for bad in ("team,private-bob", "a b"):
        with pytest.raises(ConfigError, match=r"shared_collections=.*must match \[A-Za-z0-9\]"):
            Settings(shared_collections=bad)


def test_a_postgresql_store_serves_the_default_collection_only(settings):
    """store=postgresql://... is one index per database: a second collection there would share it (and a
    user's private collection would be everyone's), so any other name is a ConfigError naming the way out."""
    collections = Collections(settings.with_(store="postgresql://rag@127.0.0.1:5432/rag"),
                              embedder=FakeEmbedder(), llm=FakeLLM(["x"]))
    for name in ("team", private_name("alice")):
        with pytest.raises(ConfigError, match=r"needs an index of its own, but the PostgreSQL store holds one index "
                                              r"per database .* or use the FAISS store"):
            collections.directory(name)
    with pytest.raises(ConfigError, match="PostgreSQL store"):
        collections.open(private_name("alice"), "alice")
    assert collections.directory(DEFAULT) == settings.index_dir  # default is the database's one index
