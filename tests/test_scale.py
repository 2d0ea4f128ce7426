"""zoo.scale.embed_dataset on a local Ray (2 CPUs, one session for the module) with real offline models.

What is checked: the Parquet output of all-minilm-l6-v2 over a few hundred standard-library
sentences matches plain ``model.embed`` row by row (same ids, cosine >= 0.9999) and carries the
space in its schema metadata; bad rows land in the errors table with their reason; a job whose
shards were deleted embeds only those and ends identical to the uninterrupted run; another job's
output folder is refused; the embedding cache serves a shard embedded before; a folder of point
clouds (pointnet-mini) gets path ids and its unreadable file in the errors table; the command line
reports a finished job and refuses a mismatched one.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import zoo  # noqa: E402
from tests.fixtures.tiny_vlm import tiny_vlm_cache  # noqa: E402, F401
from tests.support import stdlib_sentences  # noqa: E402
from zoo.errors import InvalidInputError, ZooError  # noqa: E402
from zoo.scale import ShardEmbedder, card_sha256, cli_main, embed_dataset, plan_job  # noqa: E402

pytestmark = pytest.mark.timeout(300)  # each test, its Ray fixtures included, or it fails with a traceback

MODEL = "all-minilm-l6-v2"
N_TEXTS = 300
BAD_ROWS = (7, 130)  # None in a string column: not a text
SHARD_ROWS = 64


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def texts() -> list:
    rows: list = list(stdlib_sentences()[:N_TEXTS])
    for i in BAD_ROWS:
        rows[i] = None
    return rows


@pytest.fixture(scope="module")
def text_source(tmp_path_factory, texts):
    folder = tmp_path_factory.mktemp("texts")
    table = pa.table({"text": pa.array(texts, pa.string())})
    pq.write_table(table.slice(0, 100), folder / "a.parquet", row_group_size=30)  # shards span files
    pq.write_table(table.slice(100), folder / "b.parquet", row_group_size=45)
    return folder


@pytest.fixture(scope="module")
def full_run(ray_session, text_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "vectors"
    job = embed_dataset(MODEL, text_source, out, shard_rows=SHARD_ROWS, actors=1, progress=False)
    return job, pq.read_table(out)


@pytest.fixture(scope="module")
def local_shards(tmp_path_factory):
    """The actor class run in this process (no Ray): one model for the plain-embed comparison too."""
    out = tmp_path_factory.mktemp("local")
    return ShardEmbedder(MODEL, str(out), modality="text", cache=str(out / "_cache.sqlite"), threads=1,
                         embed_rows=256, options={})


def _vectors(table) -> np.ndarray:
    return np.stack(table.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)


def test_vectors_match_plain_embed(full_run, texts, local_shards):
    job, table = full_run
    assert (job.items, job.rows, job.bad_items, job.shards) == (N_TEXTS, N_TEXTS - 2, 2, 5)
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 384)
    ids = table.column("id").to_pylist()
    assert ids == [i for i in range(N_TEXTS) if i not in BAD_ROWS]  # input order, bad rows left out
    plain = local_shards.model.embed([texts[i] for i in ids]).vectors
    got = _vectors(table)
    cos = (got * plain).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(plain, axis=1)
    assert cos.min() >= 0.9999


def test_schema_metadata_names_the_space(full_run, local_shards):
    meta = {k.decode(): v.decode() for k, v in full_run[1].schema.metadata.items()}
    card = zoo.card(MODEL)
    assert meta["zoo.space"] == card.space and meta["zoo.model"] == MODEL
    assert meta["zoo.dim"] == "384" and meta["zoo.card_sha256"] == card_sha256(card)
    assert meta["zoo.revision"] == local_shards.model.resolved.revision
    assert meta["zoo.origin"] == local_shards.model.resolved.origin


def test_errors_table_has_the_bad_rows(full_run):
    errors = pq.read_table(full_run[0].errors).sort_by("id").to_pylist()
    assert [e["id"] for e in errors] == list(BAD_ROWS)
    assert all(e["reason"].startswith("InvalidInputError: ") and "str" in e["reason"] for e in errors)


def test_resume_embeds_only_missing_shards(full_run, text_source, tmp_path):
    job, table = full_run
    out = tmp_path / "resumed"
    shutil.copytree(job.output, out)
    for name in ("part-000000000000.parquet", "part-000000000192.parquet"):  # as if killed before these
        (out / name).unlink()
    (out / "_errors" / "part-000000000000.parquet").unlink()
    again = embed_dataset(MODEL, text_source, out, shard_rows=SHARD_ROWS, actors=1, progress=False, cache=False)
    assert again.shards_embedded == 2 and (again.rows, again.bad_items) == (job.rows, job.bad_items)
    resumed = pq.read_table(out).sort_by("id")
    assert resumed.column("id").to_pylist() == table.sort_by("id").column("id").to_pylist()
    assert np.abs(_vectors(resumed) - _vectors(table.sort_by("id"))).max() <= 1e-6  # recomputed, not cached
    assert pq.read_table(out / "_errors").sort_by("id").equals(pq.read_table(job.errors).sort_by("id"))
    done = embed_dataset(MODEL, text_source, out, shard_rows=SHARD_ROWS, progress=False)
    assert done.shards_embedded == 0 and done.rows == job.rows  # nothing left: Ray not even asked


def test_other_job_in_same_folder_is_refused(full_run, text_source):
    with pytest.raises(ZooError, match="shard_rows"):
        embed_dataset(MODEL, text_source, full_run[0].output, shard_rows=SHARD_ROWS * 2, progress=False)


def test_command_line_reports_a_finished_job(full_run, text_source, capsys):
    argv = [MODEL, str(text_source), str(full_run[0].output), "--shard-rows", str(SHARD_ROWS), "--no-progress"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert f"{N_TEXTS - 2} rows of {N_TEXTS} items in 5 shards (0 embedded now" in out and "2 bad items" in out
    assert cli_main([MODEL, str(text_source), str(full_run[0].output), "--shard-rows", "7"]) == 1  # another job


def test_cache_serves_a_shard_embedded_before(text_source, local_shards, full_run):
    plan = plan_job(text_source, column="text", modality=None, modalities=("text",), shard_rows=SHARD_ROWS)
    task = plan.tasks[1]
    first = local_shards.run(task)
    second = local_shards.run(task)
    assert first["cache_hits"] == 0 and second["cache_hits"] == SHARD_ROWS == second["rows"]
    local = pq.read_table(local_shards.output / task["name"])
    ray_made = pq.read_table(full_run[0].output / task["name"])
    assert local.column("id").equals(ray_made.column("id"))
    assert np.abs(_vectors(local) - _vectors(ray_made)).max() <= 1e-6


def test_point_cloud_folder(ray_session, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "clouds"
    (folder / "sub").mkdir(parents=True)
    names = ["a.npy", "b.npy", "sub/c.npy", "sub/d.npy"]
    for name in names:
        np.save(folder / name, rng.normal(size=(600, 3)).astype(np.float32))
    (folder / "broken.npy").write_text("not an array")
    (folder / "notes.txt").write_text("not a point cloud file: skipped by suffix")
    job = embed_dataset("pointnet-mini", folder, tmp_path / "out", shard_rows=3, actors=1, progress=False)
    table = pq.read_table(tmp_path / "out").sort_by("id")
    assert table.column("id").to_pylist() == sorted(names)
    plain = zoo.load("pointnet-mini").embed([folder / n for n in sorted(names)]).vectors
    got = _vectors(table)
    cos = (got * plain).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(plain, axis=1)
    assert cos.min() >= 0.9999
    assert (job.shards, job.bad_items) == (2, 1)
    assert pq.read_table(job.errors).column("id").to_pylist() == ["broken.npy"]


def test_video_folder(ray_session, tiny_vlm_cache, tmp_path):  # noqa: F811
    from tests.fixtures.clips import pan_frames, write_clip

    folder = tmp_path / "clips"
    folder.mkdir()
    names = ["a.mp4", "b.webm", "c.mkv"]
    write_clip(folder / "a.mp4", pan_frames(16, size=(64, 48), photo="coffee"), fps=8)
    write_clip(folder / "b.webm", pan_frames(20, size=(64, 48)), fps=8, codec="libvpx-vp9", container="webm")
    write_clip(folder / "c.mkv", pan_frames(12, size=(64, 48), photo="rocket"), fps=6, container="matroska")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    job = embed_dataset("qwen3-vl-embedding-2b", folder, tmp_path / "out", modality="video", shard_rows=2,
                        actors=1, progress=False)
    table = pq.read_table(tmp_path / "out").sort_by("id")
    assert table.column("id").to_pylist() == names
    plain = zoo.load("qwen3-vl-embedding-2b").embed([folder / n for n in names], modality="video").vectors
    got = _vectors(table)
    cos = (got * plain).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(plain, axis=1)
    assert cos.min() >= 0.9999
    assert job.bad_items == 1 and pq.read_table(job.errors).column("id").to_pylist() == ["broken.mp4"]


def test_plan_of_a_glob_and_of_a_list(tmp_path):
    for name in ("x/b.png", "x/a.png", "x/deep/c.png", "x/skip.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    plan = plan_job(f"{tmp_path}/x/**/*.png", column="text", modality=None, modalities=("image",), shard_rows=2)
    assert [t["ids"] for t in plan.tasks] == [["a.png", "b.png"], ["deep/c.png"]]
    assert [t["name"] for t in plan.tasks] == ["part-000000000000.parquet", "part-000000000002.parquet"]
    listed = plan_job([tmp_path / "x/b.png", tmp_path / "x/deep/c.png"], column="text", modality="image",
                      modalities=("image", "text"), shard_rows=8)
    assert listed.tasks[0]["ids"] == ["b.png", "deep/c.png"]
    with pytest.raises(InvalidInputError, match="no items"):
        plan_job(f"{tmp_path}/x/*.jpg", column="text", modality=None, modalities=("image",), shard_rows=2)
    with pytest.raises(InvalidInputError, match="say which"):
        plan_job(tmp_path / "x", column="text", modality=None, modalities=("image", "text"), shard_rows=2)


def _keyed_source(folder, texts, keys) -> None:
    """The texts with a ``key`` column, in two files (shards span them)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({"key": keys, "text": pa.array(texts, pa.string())})
    pq.write_table(table.slice(0, 90), folder / "a.parquet", row_group_size=40)
    pq.write_table(table.slice(90), folder / "b.parquet", row_group_size=50)


def test_id_column_carries_the_input_ids_through_a_resumed_job(full_run, texts, tmp_path):
    job, table = full_run
    keys = [f"doc-{(i * 37) % N_TEXTS:04d}" for i in range(N_TEXTS)]  # unique, not in input order
    source, out = tmp_path / "keyed", tmp_path / "out"
    _keyed_source(source, texts, keys)
    cache = job.output / "_cache.sqlite"  # the texts were embedded by the full run: served from its cache
    first = embed_dataset(MODEL, source, out, shard_rows=SHARD_ROWS, actors=1, progress=False, cache=cache,
                          id_column="key")
    assert (first.rows, first.bad_items, first.shards) == (job.rows, job.bad_items, job.shards)
    got = pq.read_table(out)
    assert got.schema.field("id").type == pa.string()
    assert got.column("id").to_pylist() == [keys[i] for i in range(N_TEXTS) if i not in BAD_ROWS]
    by_row = dict(zip(table.column("id").to_pylist(), _vectors(table), strict=True))
    want = np.stack([by_row[i] for i in range(N_TEXTS) if i not in BAD_ROWS])
    assert np.abs(_vectors(got) - want).max() <= 1e-6
    assert sorted(pq.read_table(out / "_errors").column("id").to_pylist()) == sorted(keys[i] for i in BAD_ROWS)

    (out / "part-000000000128.parquet").unlink()  # as if killed before this shard; another one is altered
    damaged = out / "part-000000000064.parquet"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="part-000000000064"):
        again = embed_dataset(MODEL, source, out, shard_rows=SHARD_ROWS, actors=1, progress=False, cache=cache,
                              id_column="key")
    assert again.shards_embedded == 2 and again.rows == job.rows
    assert pq.read_table(out).equals(got)
    with pytest.raises(ZooError, match="id_column"):  # the id column is part of the job
        embed_dataset(MODEL, source, out, shard_rows=SHARD_ROWS, progress=False)


def test_id_column_is_checked_when_the_job_is_planned(tmp_path):
    texts = [f"text {i}" for i in range(200)]

    def plan(keys, name="src", **kwargs):
        folder = tmp_path / name
        _keyed_source(folder, texts, keys)
        return plan_job(folder, column="text", modality=None, modalities=("text",), shard_rows=64, **kwargs)

    ints = plan(pa.array(range(1000, 1200), pa.int32()), id_column="key")
    assert ints.describe["id_column"] == "key" and {t["id_kind"] for t in ints.tasks} == {"int"}
    items, ids, id_type = ShardEmbedder.items_of(ints.tasks[1])  # rows 64..127 span both files
    assert items == texts[64:128] and ids == list(range(1064, 1128)) and id_type == pa.int64()
    assert "id_column" not in plan(list(range(200)), name="plain").describe  # as before: job files still match
    repeated = [f"k{i}" for i in range(200)]
    repeated[150] = "k3"
    missing = [f"k{i}" for i in range(200)]
    missing[120] = None
    cases = [
        (lambda: plan([f"k{i}" for i in range(200)], id_column="nope"), "'nope'"),
        (lambda: plan(repeated, id_column="key"), "'k3' appears 2 times"),
        (lambda: plan(missing, id_column="key"), "row 120"),
        (lambda: plan([i * 0.5 for i in range(200)], id_column="key"), "strings or integers"),
        (lambda: plan(pa.array([1 << 63] + list(range(199)), pa.uint64()), name="big", id_column="key"), "int64"),
        (lambda: plan_job([tmp_path / "x.png"], column="text", modality="image", modalities=("image",),
                          shard_rows=2, id_column="key"), "Parquet"),
    ]
    for call, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            call()
    folder = tmp_path / "mixed"
    folder.mkdir()
    pq.write_table(pa.table({"key": [1, 2], "text": ["a", "b"]}), folder / "a.parquet")
    pq.write_table(pa.table({"key": ["3", "4"], "text": ["c", "d"]}), folder / "b.parquet")
    with pytest.raises(InvalidInputError, match="strings in some files"):
        plan_job(folder, column="text", modality=None, modalities=("text",), shard_rows=2, id_column="key")


def test_progress_off_a_terminal_is_a_line_per_shard(ray_session, tmp_path, capfd):
    """A 5-shard job run with its output to a pipe prints one line per finished shard (not Ray's "0/1" bars)."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "clouds"
    folder.mkdir()
    for k in range(5):
        np.save(folder / f"c{k}.npy", rng.normal(size=(300, 3)).astype(np.float32))
    capfd.readouterr()
    job = embed_dataset("pointnet-mini", folder, tmp_path / "out", shard_rows=1, actors=1, progress=True)
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("embed-dataset pointnet-mini:")]
    assert job.shards == 5
    assert [line.split(": ", 1)[1].split(" done")[0] for line in lines] == [f"shard {k}/5" for k in range(1, 6)]
    assert all(" s)" in line for line in lines)


def test_shard_progress_draws_a_bar_on_a_terminal(monkeypatch):
    import io

    from zoo.scale import ShardProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term, pipe = Terminal(), io.StringIO()
    with ShardProgress(3, "m", stream=term) as shown:
        for k in range(3):
            shown.done({"name": f"s{k}", "seconds": 0.5})
    assert "embed-dataset m" in term.getvalue() and "3/3" in term.getvalue() and "shard 1/3" not in term.getvalue()
    with ShardProgress(2, "m", stream=pipe) as shown:
        shown.done({"name": "a", "seconds": 1.0})
        shown.done({"name": "b", "error": "bad file"})
    assert pipe.getvalue().splitlines() == ["embed-dataset m: shard 1/2 done (a, 1.0 s)",
                                            "embed-dataset m: shard 2/2 failed: bad file"]
    with ShardProgress(2, "m", enabled=False, stream=pipe) as shown:
        shown.done({"name": "c"})
    assert len(pipe.getvalue().splitlines()) == 2
