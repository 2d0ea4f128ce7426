"""zoo embed-dataset when things break: unreadable job files and inputs, damaged shards, a killed driver.

What is checked: a truncated ``_job.json`` and a truncated or garbage input Parquet make ``zoo embed-dataset``
print one line naming the file and exit 1 (no traceback); a shard cut short, one with too few rows and one
with a flipped byte are each named in a warning and embedded again on resume, so every input row appears
exactly once with the vector of an uninterrupted run; the Ray processes a SIGKILLed driver leaves running are
stopped (with a warning naming them) by the next run into the same folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from tests.support import stdlib_sentences  # noqa: E402
from zoo import cli, scale  # noqa: E402

pytestmark = pytest.mark.timeout(300)

MODEL = "all-minilm-l6-v2"
N_TEXTS = 90
BAD_ROW = 5
SHARD_ROWS = 16  # 6 shards


@pytest.fixture(scope="module")
def texts() -> list:
    rows: list = list(stdlib_sentences()[:N_TEXTS])
    rows[BAD_ROW] = None
    return rows


@pytest.fixture(scope="module")
def source(tmp_path_factory, texts) -> Path:
    path = tmp_path_factory.mktemp("src") / "texts.parquet"
    pq.write_table(pa.table({"text": pa.array(texts, pa.string())}), path, row_group_size=20)
    return path


def _cli(capsys, *args: str) -> tuple[int, str]:
    rc = cli.main(["embed-dataset", MODEL, *args, "--no-progress"])
    return rc, capsys.readouterr().err


def _one_line_error(err: str, name: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: ") and name in lines[0], err
    assert "Traceback" not in err


def test_truncated_job_file_is_one_line(source, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "_job.json").write_text('{\n "card_sha256": "ab12', encoding="utf-8")  # cut short mid-write
    rc, err = _cli(capsys, str(source), str(out), "--shard-rows", str(SHARD_ROWS))
    assert rc == 1
    _one_line_error(err, str(out / "_job.json"))
    (out / "_job.json").write_text("[1, 2]", encoding="utf-8")  # JSON, but not a job file
    rc, err = _cli(capsys, str(source), str(out), "--shard-rows", str(SHARD_ROWS))
    assert rc == 1
    _one_line_error(err, "_job.json")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_input_parquet_is_one_line(source, tmp_path, capsys, damage):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(source, folder / "a.parquet")
    data = source.read_bytes()
    bad = folder / "b.parquet"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"PAR1 not really parquet " * 20)
    rc, err = _cli(capsys, str(folder), str(tmp_path / "out"))
    assert rc == 1
    _one_line_error(err, str(bad))


def test_input_unreadable_at_embed_time_is_reported_not_raised(source, tmp_path):
    """A file cut short after planning: the shard's status names it (the driver raises it as one line)."""
    plan = scale.plan_job(source, column="text", modality=None, modalities=("text",), shard_rows=SHARD_ROWS)
    copy = tmp_path / "texts.parquet"
    copy.write_bytes(source.read_bytes()[:200])
    task = json.loads(json.dumps(plan.tasks[0]).replace(str(source), str(copy)))
    actor = scale.ShardEmbedder(MODEL, str(tmp_path / "out"), modality="text", cache=None, threads=1,
                                embed_rows=64, options={})
    status = actor.run(task)
    assert str(copy) in status["error"] and "part-000000000000.parquet" in status["error"]
    assert not (tmp_path / "out" / task["name"]).exists()


# -- damaged output shards, on a local Ray ---------------------------------------------------------
@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=1, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def finished(ray_session, source, tmp_path_factory):
    out = tmp_path_factory.mktemp("job") / "vectors"
    job = scale.embed_dataset(MODEL, source, out, shard_rows=SHARD_ROWS, actors=1, progress=False)
    assert (job.rows, job.bad_items, job.shards) == (N_TEXTS - 1, 1, 6)
    return out, pq.read_table(out).sort_by("id")


def _vectors(table) -> np.ndarray:
    return np.stack(table.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)


def test_damaged_shards_are_recomputed_on_resume(finished, source, tmp_path):
    done, reference = finished
    out = tmp_path / "resumed"
    shutil.copytree(done, out)
    cut = out / "part-000000000016.parquet"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # killed mid-copy: no footer
    short = out / "part-000000000032.parquet"
    table = pq.read_table(short)
    pq.write_table(table.slice(0, 5), short)  # a whole Parquet file, with rows missing
    flipped = out / "part-000000000048.parquet"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 3] ^= 0xFF  # same size, footer intact
    flipped.write_bytes(bytes(data))
    with pytest.warns(UserWarning) as caught:
        job = scale.embed_dataset(MODEL, source, out, shard_rows=SHARD_ROWS, actors=1, progress=False, cache=False)
    named = " ".join(str(w.message) for w in caught)
    assert all(str(p) in named for p in (cut, short, flipped)), named
    assert job.shards_embedded == 3 and (job.rows, job.bad_items) == (N_TEXTS - 1, 1)
    got = pq.read_table(out).sort_by("id")
    ids = got.column("id").to_pylist()
    assert ids == [i for i in range(N_TEXTS) if i != BAD_ROW]  # every row exactly once
    assert np.abs(_vectors(got) - _vectors(reference)).max() <= 1e-5
    again = scale.embed_dataset(MODEL, source, out, shard_rows=SHARD_ROWS, progress=False)
    assert again.shards_embedded == 0  # the recomputed shards verify


# -- a killed driver's Ray processes ---------------------------------------------------------------
DRIVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from zoo import scale
    with scale.ray_session(None, 1, record=Path(sys.argv[1])) as ray:
        print("ready", flush=True)
        time.sleep(600)
""")


def _session_processes(session: str) -> list[int]:
    """Live processes with a file of the Ray session's folder open (its logs), found in /proc."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX":
                continue
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if any(link.startswith(session + "/") for link in links):
            found.append(int(pid))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_next_run_stops_ray_left_by_a_killed_driver(finished, source, capsys):
    out, _ = finished
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(out)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert driver.stdout.readline().strip() == "ready"
        record = json.loads((out / "_ray.json").read_text())
        assert record["driver"] == driver.pid
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    session = record["session_dir"]
    time.sleep(2)
    left = _session_processes(session)
    assert left, "a killed driver left no Ray process running (nothing to check)"
    with pytest.warns(UserWarning, match="stopped .* Ray processes") as caught:
        rc = cli.main(["embed-dataset", MODEL, str(source), str(out), "--shard-rows", str(SHARD_ROWS),
                       "--no-progress"])
    assert rc == 0 and f"{N_TEXTS - 1} rows of {N_TEXTS} items" in capsys.readouterr().out
    assert all(str(pid) in str(caught[0].message) for pid in left)
    assert _session_processes(session) == []
    assert not (out / "_ray.json").exists()
