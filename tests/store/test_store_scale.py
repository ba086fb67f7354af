"""Index-type selection in the store: HNSW and IVF keep the store's contract (growing ids,
deletion, atomic save/load), and `auto` picks the type by corpus size. Small n, forced types."""
import numpy as np
import pytest

from rag.config import Settings
from rag.errors import ConfigError
from rag.store import faiss_index as store_mod
from rag.store.faiss_index import IndexStore
from rag.types import Chunk

DIM = 32
PER_DOC = 100


def clustered(n: int, seed: int) -> np.ndarray:
    """Normalised vectors around 20 centres, like embeddings of a few topics."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def add_docs(store: IndexStore, names: list[str], seed: int) -> dict[int, np.ndarray]:
    """Adds PER_DOC chunks per name; returns {chunk id: vector}."""
    vectors = clustered(len(names) * PER_DOC, seed)
    out = {}
    for k, name in enumerate(names):
        first = store.reserve_ids(PER_DOC)
        chunks = [Chunk(id=first + i, doc_id=name, source=f"/{name}.txt", text=f"{name} {i}", start=0, end=1)
                  for i in range(PER_DOC)]
        vecs = vectors[k * PER_DOC:(k + 1) * PER_DOC]
        store.add(name, f"/{name}.txt", PER_DOC, chunks, vecs)
        out.update({c.id: v for c, v in zip(chunks, vecs)})
    return out


def self_hit_rate(store: IndexStore, vectors: dict[int, np.ndarray], sample: int = 300) -> float:
    ids = sorted(vectors)[:: max(1, len(vectors) // sample)]
    return float(np.mean([store.search(vectors[i], 1)[0][0].id == i for i in ids]))


def returned_ids(store: IndexStore, vectors: dict[int, np.ndarray], k: int = 10) -> set[int]:
    ids = sorted(vectors)[::25]
    return {c.id for i in ids for c, _ in store.search(vectors[i], k)}


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_add_delete_add_reload_search(tmp_path, kind):
    s = IndexStore.create(tmp_path, "fake", DIM, 100, 1, index_type=kind)
    live = add_docs(s, [f"a{i}" for i in range(30)], seed=1)  # 3,000 vectors
    s.save()
    assert s.kind == kind
    for name in ("a0", "a1", "a2"):
        removed = s.remove(name)
        for cid in removed.chunk_ids:
            del live[cid]
    gone = set(range(0, 3 * PER_DOC))
    assert not returned_ids(s, live) & gone  # deleted chunks are never returned, before a save
    more = add_docs(s, ["b0", "b1"], seed=2)
    assert min(more) == 30 * PER_DOC  # ids of deleted chunks are not reused
    live.update(more)
    s.save()

    r = IndexStore.open(tmp_path, "fake", DIM, index_type=kind)
    assert r.kind == kind
    assert len(r.chunks) == len(live) == 2_900
    assert self_hit_rate(r, live) >= 0.95
    assert not returned_ids(r, live) & gone
    assert {c.id for c, _ in r.search(live[30 * PER_DOC], 5)} <= set(live)
    newest = add_docs(r, ["c0"], seed=3)
    assert min(newest) == 32 * PER_DOC
    r.save()
    r2 = IndexStore.open(tmp_path, "fake", DIM, index_type=kind)
    top = r2.search(newest[min(newest)], 1)[0]
    assert top[0].id == min(newest) and top[1] == pytest.approx(1.0, abs=1e-4)


def test_hnsw_tombstones_survive_reload_and_are_compacted(tmp_path):
    s = IndexStore.create(tmp_path, "fake", DIM, 100, 1, index_type="hnsw")
    live = add_docs(s, [f"a{i}" for i in range(30)], seed=4)
    s.save()
    s.remove("a5")  # 100 of 3,000: below the 10% that triggers a rebuild
    s.save()
    r = IndexStore.open(tmp_path, "fake", DIM, index_type="hnsw")
    assert r.index.ntotal == 3_000 and len(r.chunks) == 2_900  # the tombstones stay in the graph...
    gone = set(range(500, 600))
    for cid in gone:
        del live[cid]
    assert not returned_ids(r, live) & gone  # ...but are never returned
    for name in ("a6", "a7", "a8"):
        r.remove(name)
    r.save()  # 400 of 3,000 tombstones: the graph is rebuilt without them
    assert r.index.ntotal == 2_600 and not r._deleted
    assert IndexStore.open(tmp_path, "fake", DIM).index.ntotal == 2_600


def test_auto_picks_the_type_by_size_with_hysteresis(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "AUTO_ANN_MIN", 2_000)
    monkeypatch.setattr(store_mod, "AUTO_FLAT_BELOW", 1_000)
    s = IndexStore.create(tmp_path, "fake", DIM, 100, 1)
    assert s.index_type == "auto"
    add_docs(s, [f"a{i}" for i in range(15)], seed=5)
    s.save()
    assert s.kind == "flat"  # 1,500 < 2,000
    add_docs(s, [f"b{i}" for i in range(10)], seed=6)
    assert s.kind == "flat"  # the type changes at save, not per document
    s.save()
    assert s.kind == "ivf"  # 2,500
    assert IndexStore.open(tmp_path, "fake", DIM).kind == "ivf"
    for i in range(12):
        s.remove(f"a{i}")
    s.save()
    assert s.kind == "ivf"  # 1,300: inside the band, no rebuild
    for i in range(4):
        s.remove(f"b{i}")
    s.save()
    assert s.kind == "flat"  # 900 < 1,000
    assert len(s.chunks) == s.index.ntotal == 900


def test_auto_keeps_a_small_index_flat_and_an_existing_ann_index(tmp_path):
    s = IndexStore.create(tmp_path, "fake", DIM, 100, 1)
    add_docs(s, ["a"], seed=7)
    s.save()
    assert s.kind == "flat"
    h = IndexStore.create(tmp_path / "h", "fake", DIM, 100, 1, index_type="hnsw")
    add_docs(h, [f"a{i}" for i in range(3)], seed=8)
    h.save()
    reopened = IndexStore.open(tmp_path / "h", "fake", DIM)  # auto, 300 vectors
    reopened.remove("a0")
    reopened.save()
    assert reopened.kind == "flat"
    assert IndexStore.open(tmp_path / "h", "fake", DIM).kind == "flat"


def test_forced_ivf_waits_for_training_data_and_retrains_as_it_grows(tmp_path):
    s = IndexStore.create(tmp_path, "fake", DIM, 100, 1, index_type="ivf")
    add_docs(s, [f"a{i}" for i in range(5)], seed=9)
    s.save()
    assert s.kind == "flat"  # 500 vectors: too few to train inverted lists
    add_docs(s, [f"b{i}" for i in range(10)], seed=10)
    s.save()
    assert s.kind == "ivf"
    first_nlist = s.index.nlist
    live = add_docs(s, [f"c{i}" for i in range(45)], seed=11)  # 1,500 -> 6,000
    s.save()
    assert s.index.nlist >= 2 * first_nlist
    assert s.index.ntotal == 6_000
    assert self_hit_rate(s, live) >= 0.95


def test_forced_flat_converts_an_ann_index_back(tmp_path):
    s = IndexStore.create(tmp_path, "fake", DIM, 100, 1, index_type="ivf")
    live = add_docs(s, [f"a{i}" for i in range(20)], seed=12)
    s.save()
    r = IndexStore.open(tmp_path, "fake", DIM, index_type="flat")
    assert r.kind == "ivf"  # opening does not rebuild; the next save does
    r.save()
    assert r.kind == "flat"
    assert self_hit_rate(r, live) == 1.0


def test_unknown_index_type_is_rejected():
    with pytest.raises(ConfigError, match="index_type"):
        Settings(index_type="annoy")
    assert Settings().index_type == "auto"
    with pytest.raises(ValueError, match="index_type"):
        IndexStore.create("/nonexistent", "fake", DIM, 100, 1, index_type="annoy")
