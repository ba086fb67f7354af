"""Questions scoped to some documents (ids or path globs): passages of other documents never appear,
and the top k come from the chosen documents (filtered before ranking), with fakes. Fast and offline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.answer.answerer import REFUSAL
from rag.app import cli, ui
from rag.errors import InputError
from rag.pipeline import RAG
from rag.store import faiss_index as store_mod
from rag.store.faiss_index import IndexStore
from rag.testing import FakeEmbedder, FakeLLM
from rag.types import Chunk
from tests.conftest import SEED_ARTICLE

QUESTION = "What is the monthly rent for the warehouse lease?"


def write_corpus(folder: Path) -> dict[str, Path]:
    """Three documents about rent. The question's words fill the two decoys, so unscoped retrieval
    ranks them first; the target (a report) mentions the rent once among other sentences."""
    folder.mkdir(parents=True, exist_ok=True)
    decoy = " ".join(f"The monthly rent for the warehouse lease number {i} is due on the first day." for i in range(12))
    files = {
        "lease-a": folder / "lease-a.txt",
        "lease-b": folder / "contracts" / "lease-b.md",
        "report": folder / "report-2024.txt",
    }
    files["lease-b"].parent.mkdir(exist_ok=True)
    files["lease-a"].write_text(decoy, encoding="utf-8")
    files["lease-b"].write_text(decoy.replace("first", "second"), encoding="utf-8")
    files["report"].write_text(
        "The annual report covers revenue and staff. Revenue grew by nine percent in the year. "
        "The board met four times. The company pays a rent of 4,200 euros each month for its depot. "
        "Staff numbers rose to 57. The auditors signed off in March. Dividends were paid in June.",
        encoding="utf-8")
    return files


@pytest.fixture
def corpus(tmp_path) -> dict[str, Path]:
    return write_corpus(tmp_path / "docs")


def ids_by_name(rag: RAG) -> dict[str, str]:
    return {Path(d.source).stem: d.id for d in rag.documents()}


def doc_names(passages) -> set[str]:
    return {Path(p.chunk.source).stem for p in passages}


@pytest.mark.parametrize("changes", [
    {"retrieval": "dense"},
    {"retrieval": "hybrid"},
    {"retrieval": "hybrid", "diversity": 0.5},
    {"retrieval": "dense", "query_rewrite": "hyde"},
    {"retrieval": "dense", "index_type": "hnsw"},
    {"retrieval": "hybrid", "index_type": "ivf"},
], ids=["dense", "hybrid", "hybrid+mmr", "hyde", "hnsw", "ivf"])
def test_scoped_retrieval_ranks_only_the_chosen_documents(make_rag, corpus, changes, monkeypatch):
    monkeypatch.setattr(store_mod, "IVF_MIN_VECTORS", 1)  # IVF on a few chunks (one inverted list)
    rag = make_rag("The rent is what the passages say.", chunk_size=20, **changes)
    rag.add(list(corpus.values()))
    if "index_type" in changes:
        assert rag.store.kind == changes["index_type"]
    ids = ids_by_name(rag)
    k = 3
    unscoped = rag.retrieve(QUESTION, k)
    assert "report-2024" not in doc_names(unscoped)  # the decoys win without a scope
    for documents in ([ids["report-2024"]], ["report-2024*"], [str(corpus["report"])]):
        passages = rag.retrieve(QUESTION, k, documents)
        # filtered before ranking: k passages, all from the report, the rent among them
        assert len(passages) == k and doc_names(passages) == {"report-2024"}
        assert any("4,200 euros" in p.chunk.text for p in passages)
    two = rag.retrieve(QUESTION, 20, ["lease-b.md", ids["report-2024"]])
    assert doc_names(two) == {"lease-b", "report-2024"}
    assert len(two) == len(rag.store.docs[ids["lease-b"]].chunk_ids) + len(rag.store.docs[ids["report-2024"]].chunk_ids)


def test_scoped_answer_cites_only_the_chosen_document_and_refuses_without_it(make_rag, corpus):
    def reply(prompt: str) -> str:
        return "The company pays a rent of 4,200 euros each month for its depot [1]." if "4,200" in prompt else REFUSAL

    rag = make_rag(reply, chunk_size=20, retrieval="hybrid", min_score=0.05)
    rag.add(list(corpus.values()))
    answer = rag.ask(QUESTION, documents=["report-2024.txt"])
    assert not answer.abstained and "4,200 euros" in answer.text
    assert {Path(c.source).name for c in answer.citations} == {"report-2024.txt"}
    assert "lease number" not in rag.llm.prompts[-1]  # the decoys never reach the prompt
    refused = rag.ask("How much rent does the company pay for its depot?", documents=["lease-*"])
    assert refused.abstained and refused.text == REFUSAL
    assert "4,200" not in rag.llm.prompts[-1] and "depot" not in rag.llm.prompts[-1].split("Question:")[0]
    streamed = list(rag.stream(QUESTION, documents=["*.txt"]))
    assert {Path(c.source).stem for c in streamed[-1].citations} <= {"report-2024", "lease-a"}


def test_whole_corpus_context_shows_only_the_chosen_documents(make_rag, corpus):
    rag = make_rag(context="auto", min_score=0.05)
    rag.add(list(corpus.values()))
    assert rag.corpus is not None and rag.corpus.fits()
    ranked, shown = rag.context(QUESTION)
    assert "lease-a" in doc_names(shown)
    ranked, shown = rag.context(QUESTION, documents=["report-2024*"])
    assert doc_names(shown) == doc_names(ranked) == {"report-2024"}
    assert any("4,200 euros" in p.text for p in shown)
    ranked, shown = rag.context(QUESTION, documents=["*.md"])
    assert doc_names(shown) == {"lease-b"}
    # a scoped prompt is not saved as the whole corpus's llama.cpp state (there is none with fakes,
    # but the answer still comes from the chosen document only)
    answer = rag.ask("zebra quantum xylophone", documents=["report-2024*"])
    assert answer.abstained


def test_unknown_ids_and_globs_are_input_errors_naming_them(make_rag, corpus):
    rag = make_rag(chunk_size=20)
    rag.add(list(corpus.values()))
    with pytest.raises(InputError) as err:
        rag.ask(QUESTION, documents=["report-2024*", "nope-*.pdf", "0123abcd"])
    message = str(err.value)
    assert "'nope-*.pdf'" in message and "'0123abcd'" in message and "report-2024" not in message
    assert "rag list" in message
    for bad in (["  "], "report-2024.txt"):
        with pytest.raises(InputError):
            rag.retrieve(QUESTION, 3, bad)
    with pytest.raises(InputError):
        rag.context(QUESTION, documents=["missing.txt"])
    assert rag.llm.prompts == []
    assert len(rag.retrieve(QUESTION, 3, [])) == 3  # empty = the whole corpus
    assert len(rag.retrieve(QUESTION, 3, None)) == 3


def test_scoped_store_search_is_the_exact_top_k_of_the_chosen_chunks_on_every_index_type(tmp_path, monkeypatch):
    """flat (selector), IVF (selector over every list), HNSW (exact scan of a small selection, and the
    selector with a raised efSearch above HNSW_EXACT_MAX), tombstones never returned."""
    emb = FakeEmbedder(dim=32)
    rng = np.random.default_rng(0)
    monkeypatch.setattr(store_mod, "IVF_MIN_VECTORS", 1)
    for kind in ("flat", "ivf", "hnsw"):
        store = IndexStore.create(tmp_path / kind, emb.name, 32, 100, 1, index_type=kind)
        vectors = rng.standard_normal((600, 32)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for d in range(6):
            first = store.reserve_ids(100)
            chunks = [Chunk(id=first + i, doc_id=f"d{d}", source=f"/d{d}.txt", text=f"t{first + i}", start=0, end=1)
                      for i in range(100)]
            store.add(f"d{d}", f"/d{d}.txt", 100, chunks, vectors[first:first + 100])
        store.save()
        store.remove("d1")  # HNSW: its ids become tombstones in the graph
        assert store.kind == kind
        query = vectors[150]  # a chunk of the removed document
        for within, exact_max in ((frozenset(range(100, 300)), 20_000), (frozenset(range(200, 600)), 0)):
            monkeypatch.setattr(store_mod, "HNSW_EXACT_MAX", exact_max)
            live = sorted(i for i in within if i in store.chunks)
            want = [live[i] for i in np.argsort(-(vectors[live] @ query), kind="stable")[:10]]
            got = [c.id for c, _ in store.search(query, 10, within)]
            assert set(got) <= set(live)
            if kind == "hnsw" and exact_max == 0:
                assert len(set(got) & set(want)) >= 9  # approximate, on a third of the graph
            else:
                assert got == want


def test_cli_ask_doc_is_repeatable(monkeypatch, tmp_path, corpus, capsys):
    llm = FakeLLM(["The company pays a rent of 4,200 euros each month for its depot [1]."] * 4)

    def _open(settings):
        return RAG.open(settings=settings.with_(min_score=0.05, chunk_size=20, context="chunk"),
                        embedder=FakeEmbedder(), llm=llm, seed=False)

    monkeypatch.setattr(cli, "_open", _open)
    index = str(tmp_path / "idx")
    assert cli.main(["ingest", *map(str, corpus.values()), "--index", index]) == 0
    capsys.readouterr()
    assert cli.main(["ask", "--json", QUESTION, "--doc", "report-2024*", "--doc", "*.md", "--top-k", "30", "--index", index]) == 0
    assert "4,200 euros" in capsys.readouterr().out
    prompt = llm.prompts[-1].split("Question:")[0]
    assert "lease-b.md" in prompt and "report-2024.txt" in prompt and "lease-a.txt" not in prompt
    monkeypatch.chdir(corpus["report"].parent)  # a path relative to where rag runs
    assert cli.main(["ask", "--json", QUESTION, "--doc", "./contracts/lease-b.md", "--index", index]) == 0
    assert "report-2024.txt" not in llm.prompts[-1] and "lease-b.md" in llm.prompts[-1]
    assert cli.main(["ask", QUESTION, "--doc", "nothing-like-this", "--index", index]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "nothing-like-this" in err and "rag list" in err and "Traceback" not in err


def test_the_ui_handler_and_api_pass_the_selection(make_rag, corpus):
    rag = make_rag("The company pays a rent of 4,200 euros each month for its depot [1].", chunk_size=20)
    rag.add(list(corpus.values()))
    report_id = ids_by_name(rag)["report-2024"]
    assert report_id in {doc_id for _, doc_id in ui.document_choices(rag)}
    *_, (messages, *_rest) = ui.ChatHandler(rag)(QUESTION, None, 3, [report_id])
    prompt = rag.llm.prompts[-1].split("Question:")[0]
    assert "report-2024.txt" in prompt and "lease" not in prompt
    assert "4,200 euros" in messages[-1]["content"]
    *_, (messages, *_rest) = ui.ChatHandler(rag)(QUESTION, None, 3, [])  # empty = all documents
    assert "lease-a.txt" in rag.llm.prompts[-1]
    data = ui.api_ask(rag, QUESTION, 3, ["report-2024*"])
    assert {Path(c["source"]).name for c in data["citations"]} == {"report-2024.txt"}
    with pytest.raises(InputError):
        ui.api_ask(rag, QUESTION, 3, ["no-such-doc"])



@pytest.mark.integration  # a real Gradio server on 127.0.0.1, with fakes
def test_the_gradio_ask_endpoint_takes_an_optional_list_of_documents(make_rag, corpus):
    gradio_client = pytest.importorskip("gradio_client")
    rag = make_rag("The company pays a rent of 4,200 euros each month for its depot [1].", chunk_size=20)
    rag.add(list(corpus.values()))
    demo = ui.build_app(rag)
    ui.launch(demo, "127.0.0.1", None, block=False, quiet=True)
    try:
        client = gradio_client.Client(demo.local_url, verbose=False)
        data = client.predict(QUESTION, 3, ["report-2024*"], api_name="/ask")
        assert {Path(c["source"]).name for c in data["citations"]} == {"report-2024.txt"}
        assert "lease" not in rag.llm.prompts[-1].split("Question:")[0]
        client.predict(QUESTION, 3, api_name="/ask")  # documents left out: all of them
        assert "lease-a.txt" in rag.llm.prompts[-1]
        with pytest.raises(Exception) as err:
            client.predict(QUESTION, 3, ["no-such-doc*"], api_name="/ask")
        assert "no-such-doc*" in str(err.value) and "rag list" in str(err.value)
    finally:
        demo.close()

@pytest.mark.integration
def test_real_models_answer_from_the_chosen_document_only_and_refuse_without_it(real_rag, real_embedder, tmp_path):
    """MiniLM + the default GGUF model: the same question, cited from whichever document it is scoped
    to, and refused when scoped to a document that lacks the answer."""
    from rag.config import Settings

    docs = tmp_path / "docs"
    docs.mkdir()
    note = docs / "agadez-note.txt"
    note.write_text("Briefing note on the Agadez drone base. The United States built the base in northern Niger "
                    "to fly surveillance drones over the Sahel. Washington spent $110 million to establish the "
                    "base in northern Niger. The base opened in 2019.\n", encoding="utf-8")
    lighthouse = docs / "lighthouse.md"
    lighthouse.write_text("The keeper painted the lighthouse tower red and white every spring. The lamp was "
                          "replaced in 1952, and the keeper's cottage became a museum in 1987.\n", encoding="utf-8")
    rag = RAG.open(settings=Settings.load(index_dir=tmp_path / "index"), embedder=real_embedder,
                   llm=real_rag.llm, seed=False)
    rag.add([SEED_ARTICLE, note, lighthouse])
    question = "How much did Washington spend to establish the base in northern Niger?"
    for documents, source in ((["agadez-note.txt"], note), ([ids_by_name(rag)[SEED_ARTICLE.stem]], SEED_ARTICLE)):
        answer = rag.ask(question, documents=documents)
        assert not answer.abstained and "110 million" in answer.text, (documents, answer.model_text)
        assert answer.citations and {c.source for c in answer.citations} == {str(source.resolve())}
    refused = rag.ask(question, documents=["lighthouse*"])
    assert refused.abstained and refused.text == REFUSAL and not refused.citations
