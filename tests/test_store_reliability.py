"""zoo.store under concurrent writers (threads, processes, writers killed with SIGKILL) and damaged files.

Each stored vector is derived from its item (a seed), so a check can recompute it: after any mix of writers
the collection must hold ids 0 .. n-1 once each, every row whose ``add`` returned, and each row's vector must
find that row first.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lancedb")

from zoo.embeddings import Embeddings  # noqa: E402
from zoo.errors import IntegrityError  # noqa: E402
from zoo.store import VectorStore  # noqa: E402

DIM = 16
posix_only = pytest.mark.skipif(os.name != "posix", reason="cross-process locking and SIGKILL are POSIX")


def _emb(vectors: np.ndarray) -> Embeddings:
    return Embeddings(np.asarray(vectors, dtype=np.float32), space="space-a", model="model-a", modality="text",
                      normalized=False)


_memo: dict[str, np.ndarray] = {}


def _vector(item: str) -> np.ndarray:
    if item not in _memo:
        _memo[item] = np.random.default_rng(zlib.crc32(item.encode())).standard_normal(DIM)
    return _memo[item]


def _vectors(items: list[str]) -> np.ndarray:
    return np.stack([_vector(item) for item in items])


def _check_collection(path: Path, name: str, committed: dict[int, str]) -> int:
    """Open the collection afresh and check it: ids 0 .. n-1 once each, every committed (id, item) there,
    each item once, and each row's vector finding that row first. Returns the row count."""
    coll = VectorStore(path).collection(name)
    rows = coll.rows()
    ids = [r[0] for r in rows]
    assert ids == list(range(len(rows))), "ids are not 0 .. n-1, each once"
    items = [r[1] for r in rows]
    assert len(set(items)) == len(items), "a row was stored twice"
    by_id = dict((r[0], r[1]) for r in rows)
    lost = {i: item for i, item in committed.items() if by_id.get(i) != item}
    assert not lost, f"committed rows missing or under another id: {sorted(lost.items())[:5]}"
    if rows:
        result = coll.search(_vectors(items), k=1)
        assert [hits[0].id for hits in result] == ids
        assert [hits[0].item for hits in result] == items
        assert coll.verify() == len(rows)
    return len(rows)


# -- threads ------------------------------------------------------------------------------------------------
def test_threads_adding_to_one_collection_get_distinct_ids_and_correct_hits(tmp_path):
    store = VectorStore(tmp_path)
    coll = store.collection("shared")
    coll.add(_emb(_vectors(["seed"])), ["seed"])
    other = VectorStore(tmp_path).collection("shared")  # a second handle on the same folder shares the lock
    threads, adds, batch = 8, 6, 5
    barrier = threading.Barrier(threads)
    committed: dict[int, str] = {0: "seed"}
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            target = coll if t % 2 else other
            barrier.wait()
            for j in range(adds):
                items = [f"t{t}-{j}-{r}" for r in range(batch)]
                ids = target.add(_emb(_vectors(items)), items)
                assert len(ids) == batch
                for i, item in zip(ids, items, strict=True):
                    assert committed.setdefault(i, item) == item, f"id {i} given twice"
        except BaseException as exc:  # noqa: BLE001 - re-raised below in the test's thread
            errors.append(exc)

    done = threading.Event()
    searches = [0]

    def reader() -> None:  # searches while the writers add: every hit is the row its vector was stored as
        try:
            while not done.is_set():
                known = dict(committed)
                ids = sorted(known)[-20:]
                hits = coll.search(_vectors([known[i] for i in ids]), k=1)
                assert [(h[0].id, h[0].item) for h in hits] == [(i, known[i]) for i in ids]
                searches[0] += 1
        except BaseException as exc:  # noqa: BLE001 - re-raised below in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    searcher = threading.Thread(target=reader)
    searcher.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.set()
    searcher.join()
    if errors:
        raise errors[0]
    assert sorted(committed) == list(range(1 + threads * adds * batch)) and searches[0] > 0
    assert len(coll) == 1 + threads * adds * batch
    assert _check_collection(tmp_path, "shared", committed) == 1 + threads * adds * batch
    result = coll.search(_vectors(["t3-2-1", "t6-5-4"]), k=1)  # the handles that wrote see every row too
    assert [hits[0].item for hits in result] == ["t3-2-1", "t6-5-4"]


# -- processes ----------------------------------------------------------------------------------------------
def _writer(path: str, name: str, tag: str, adds: int, batch: int, report: str, barrier, pause: float = 0) -> None:
    """Add ``adds`` batches of rows tagged ``tag``; after each add returns, append its ids and items to
    ``report`` (one "id item" line each, flushed), so the parent knows which rows were committed. Between
    adds it sleeps up to ``pause`` seconds."""
    coll = VectorStore(path).collection(name)
    rng = random.Random(tag)
    with open(report, "a") as fh:
        barrier.wait(timeout=120)  # every writer (and the parent) is past its imports: start together
        for j in range(adds):
            items = [f"{tag}-{j}-{r}" for r in range(batch)]
            ids = coll.add(_emb(_vectors(items)), items)
            fh.write("".join(f"{i} {item}\n" for i, item in zip(ids, items, strict=True)))
            fh.flush()
            if pause:
                time.sleep(rng.uniform(0, pause))


def _reported(reports: list[Path]) -> dict[int, str]:
    """id -> item of every complete line in the writers' reports; an id reported twice fails."""
    committed: dict[int, str] = {}
    for report in reports:
        if not report.exists():
            continue
        for line in report.read_text().splitlines(keepends=True):
            if not line.endswith("\n"):
                continue  # cut short by SIGKILL
            i, item = line.split()
            assert committed.setdefault(int(i), item) == item, f"id {i} reported for two rows"
    return committed


@posix_only
def test_processes_creating_and_filling_one_new_collection_keep_every_row_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    writers, adds, batch = 3, 8, 5
    barrier = ctx.Barrier(writers + 1)
    reports = [tmp_path / f"report-{w}.txt" for w in range(writers)]
    procs = [ctx.Process(target=_writer, args=(str(tmp_path / "db"), "fresh", f"p{w}", adds, batch,
                                               str(reports[w]), barrier)) for w in range(writers)]
    for p in procs:
        p.start()
    barrier.wait(timeout=120)
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * writers  # no "Table ... already exists", no other error
    committed = _reported(reports)
    assert sorted(committed) == list(range(writers * adds * batch))
    assert _check_collection(tmp_path / "db", "fresh", committed) == writers * adds * batch


@posix_only
def test_writers_killed_at_random_points_leave_every_committed_row_once(tmp_path):
    """8 rounds. Each round a new writer starts, and the writer left from the round before (in round 0, one
    started with it) writes alongside it until it is killed with SIGKILL at a random point; the new one is then
    frozen (SIGSTOP) at a random point, maybe holding the lock mid-commit, while the collection is checked, and
    is killed in the next round. Every writer ends by SIGKILL; the next round's writer imports during this one.
    """
    ctx = multiprocessing.get_context("spawn")
    rng = random.Random(1234)
    db, reports, rows = tmp_path / "db", [], 0

    def spawn(round_: int):
        barrier, report = ctx.Barrier(2), tmp_path / f"report-{round_}.txt"
        reports.append(report)
        proc = ctx.Process(target=_writer, args=(str(db), "killed", f"w{round_}", 100_000, 3, str(report),
                                                 barrier, 0.01))
        proc.start()
        return proc, barrier

    def kill(proc) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=60)
        assert proc.exitcode == -signal.SIGKILL  # it was still writing, not finished or failed

    rounds, first, upcoming, survivor = 8, spawn(-1), spawn(0), None
    procs = [first[0]]
    try:
        for round_ in range(rounds):
            proc, barrier = upcoming
            procs.append(proc)
            barrier.wait(timeout=120)  # the new writer is adding now
            if survivor is None:
                first[1].wait(timeout=120)
                survivor = first[0]
            else:
                os.kill(survivor.pid, signal.SIGCONT)  # ... and so is the one from the round before
            upcoming = spawn(round_ + 1) if round_ + 1 < rounds else None
            time.sleep(rng.uniform(0.1, 0.8))
            kill(survivor)
            time.sleep(rng.uniform(0.05, 0.4))
            if round_ + 1 < rounds:
                assert proc.exitcode is None, f"writer w{round_} failed (exit code {proc.exitcode})"
                os.kill(proc.pid, signal.SIGSTOP)
                survivor = proc
            else:
                kill(proc)
                survivor = None
            committed = _reported(reports)
            now = _check_collection(db, "killed", committed)
            assert now >= max(rows, len(committed))  # nothing committed before was lost
            rows = now
    finally:
        for proc in procs + ([upcoming[0]] if upcoming else []):
            if proc.exitcode is None:
                proc.kill()
                proc.join(timeout=60)
    assert rows > 8 * 3 and len(_reported(reports)) > 8 * 3  # the writers did commit rows


def test_a_collection_whose_creator_died_before_its_first_commit_is_created_afresh(tmp_path):
    store = VectorStore(tmp_path)
    store.collection("half").add(_emb(_vectors(["lost"])), ["lost"])
    for manifest in (tmp_path / "half.lance" / "_versions").iterdir():  # as if killed before the commit
        manifest.unlink()
    store = VectorStore(tmp_path)
    assert len(store.collection("half")) == 0 and store.collection("half").search(_vectors(["x"])) == [[]]
    assert store.collection("half").add(_emb(_vectors(["a", "b"])), ["a", "b"]) == [0, 1]
    assert _check_collection(tmp_path, "half", {0: "a", 1: "b"}) == 2


# -- damaged files ------------------------------------------------------------------------------------------
def _data_file(db: Path, name: str) -> Path:
    files = list((db / f"{name}.lance" / "data").glob("*.lance"))
    assert len(files) == 1
    return files[0]


def _replace_bytes(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert data.count(old) == 1 and len(old) == len(new)
    path.write_bytes(data.replace(old, new))


def _stored_unit(vector: np.ndarray) -> bytes:
    """The bytes the store keeps for a vector: float32, L2-normalized in float32."""
    v = vector.astype(np.float32)[None, :]
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype("<f4").tobytes()


def test_damaged_bytes_raise_an_integrity_error_naming_the_collection_and_spare_the_rest(tmp_path):
    db = tmp_path / "db"
    names = ["good", "bad", "broken"]
    items = {name: [f"{name}-item-{i:03d}" for i in range(60)] for name in names}
    store = VectorStore(db)
    for name in names:
        store.collection(name).add(_emb(_vectors(items[name])), items[name], [{"n": i} for i in range(60)])

    # "bad": row 3's vector bytes become row 7's (a silent change), row 10's item text another's
    bad = _data_file(db, "bad")
    _replace_bytes(bad, _stored_unit(_vector(items["bad"][3])), _stored_unit(_vector(items["bad"][7])))
    _replace_bytes(bad, b"bad-item-010", b"bad-item-099")
    # "broken": the file's footer is overwritten
    broken = _data_file(db, "broken")
    data = bytearray(broken.read_bytes())
    data[-40:] = b"\xff" * 40
    broken.write_bytes(bytes(data))

    store = VectorStore(db)
    query = _vectors([items["bad"][20]])  # far from the damaged rows: the exact search still reads them all
    with pytest.raises(IntegrityError, match="'bad'") as info:
        store.collection("bad").search(query, k=1)
    assert info.value.ids == [3, 10] and info.value.collection == "bad"
    with pytest.raises(IntegrityError, match="'bad'") as info:
        VectorStore(db).collection("bad").verify()
    assert info.value.ids == [3, 10]
    with pytest.raises(IntegrityError, match="'broken'"):
        store.collection("broken").search(query, k=1)
    with pytest.raises(IntegrityError, match="'broken'"):
        store.collection("broken").verify()

    # the other collection, the listing, and the damaged collection's other data are still there
    assert store.collections() == sorted(names)
    assert _check_collection(db, "good", dict(enumerate(items["good"]))) == 60
    assert [r[1] for r in store.collection("bad").rows()][:10] == items["bad"][:10]
    assert len(store.collection("bad")) == 60


def test_a_damaged_row_found_by_the_ann_index_is_refused(tmp_path):
    db = tmp_path / "db"
    items = [f"ann-item-{i:04d}" for i in range(300)]
    coll = VectorStore(db).collection("ann")
    coll.add(_emb(_vectors(items)), items)
    coll.create_index("ivf_flat", num_partitions=2)  # the index keeps its own copy of the vectors
    _replace_bytes(_data_file(db, "ann"), b"ann-item-0005", b"ann-item-0006")
    coll = VectorStore(db).collection("ann")
    coll.nprobes = 2
    assert [hits[0].id for hits in coll.search(_vectors(items[100:103]), k=1, exact=False)] == [100, 101, 102]
    with pytest.raises(IntegrityError, match="'ann'") as info:
        coll.search(_vectors(items[5:6]), k=1, exact=False)
    assert info.value.ids == [5]
