"""zoo serve with images: efficientnet-lite0 over data-URL images, 16 concurrent clients against one at a time.

    python bench/serve_images.py            # 2 rounds
    python bench/serve_images.py --quick    # 1 round, fewer requests

``zoo serve efficientnet-lite0 --preload`` in its own process; each request carries one real photo (the
scikit-image samples, PNG, in a ``data:`` URL), decoded in the server's thread pool and batched with the other
requests waiting. The same server answers 16 concurrent keep-alive connections and then one connection (one
image at a time); the ratio is of images per second. Before any figure the server's vectors for the photos must
equal ``zoo.load("efficientnet-lite0").embed`` of the same bytes within cosine 0.9999.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, machine, row_cosines, write_result, write_summary  # noqa: E402
from serve_batching import Server, load_bodies  # noqa: E402

MODEL = "efficientnet-lite0"
MIN_COS = 0.9999


def photos() -> list[bytes]:
    from PIL import Image

    from zoo.samples.gallery import photos as samples

    out = []
    for photo in samples():
        buf = io.BytesIO()
        Image.open(photo.path).convert("RGB").save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def body(png: bytes) -> bytes:
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    return json.dumps({"model": MODEL, "input": [{"type": "image_url", "image_url": {"url": url}}]}).encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    rounds, total = (1, 64) if args.quick else (args.rounds, 256)
    pngs = photos()
    bodies = [body(p) for p in pngs]
    server = Server(batching=True, models=(MODEL,))
    runs: dict[int, list[dict]] = {1: [], 16: []}
    try:
        served = []
        for b in bodies:
            req = urllib.request.Request(f"http://127.0.0.1:{server.port}/v1/embeddings", data=b,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req) as r:
                served.append(json.loads(r.read())["data"][0]["embedding"])
        load_bodies(server.port, 16, bodies, 32, 30)  # warm-up
        for r in range(rounds):
            for c in ((16, 1) if r % 2 == 0 else (1, 16)):
                res = load_bodies(server.port, c, bodies, total if c == 16 else total // 2, 60)
                runs[c].append(res)
                print(f"round {r + 1} c={c:2d}: {res['rps']:6.1f} images/s  p50 {res['p50']:7.1f} ms  "
                      f"p99 {res['p99']:7.1f} ms  ({res['n']} requests)", flush=True)
    finally:
        server.stop()
    import zoo

    local = zoo.load(MODEL).embed(pngs).vectors
    cos = float(row_cosines(np.array(served, dtype=np.float32), local).min())
    ok = cos >= MIN_COS
    many, one = (statistics.median(x["rps"] for x in runs[c]) for c in (16, 1))
    p99 = {c: statistics.median(x["p99"] for x in runs[c]) for c in (16, 1)}
    md = "\n".join([
        "# zoo serve: images at concurrency 16 vs one at a time", "", machine(), "",
        f"`zoo serve {MODEL}`, one PNG photo per request in a data: URL ({len(pngs)} scikit-image photos in turn), "
        f"median of {rounds} round(s).", "",
        "| concurrency | images/s | p99 ms |", "|---:|---:|---:|",
        f"| 16 | {many:.1f} | {p99[16]:.1f} |", f"| 1 | {one:.1f} | {p99[1]:.1f} |", "",
        f"Fidelity: min row cosine between the server's vectors and `embed` of the same bytes {cos:.6f}.",
    ]) + "\n"
    print(md)
    print(f"wrote {write_result('serve_images', md)}")
    command = f"python {' '.join(['bench/serve_images.py', *sys.argv[1:]])}"
    write_summary("serve_images", command, [Row(
        "zoo serve, efficientnet-lite0 over data-URL photos: 16 concurrent clients vs one at a time (images/s)",
        f"{many:.1f}", f"{one:.1f}", f"{many / one:.2f}x" if ok else "not reported: fidelity failed", "report",
        None, f"min row cosine {cos:.6f}")])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
