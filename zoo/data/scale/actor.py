"""The Ray Data actor of a dataset job: one model per actor, one shard per call.

Ray sends the class by its module path: a worker imports it from here.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from zoo.data.scale.outputs import ERRORS_DIR, _record_path, _write_atomic, _write_record
from zoo.data.scale.plan import _one_line, read_columns, read_rows
from zoo.errors import InvalidInputError


# -- the actor: one model per actor, one shard per call -----------------------------------------
def card_sha256(card) -> str:
    """sha256 of the card's content (the same facts the embedding cache fingerprints)."""
    return card.content_sha256()


def _reason(exc: Exception) -> str:
    """The error's class and message, without the "input[i]: " prefix (i was the index in a batch of one)."""
    return f"{type(exc).__name__}: " + re.sub(r"^input\[\d+\]: ", "", str(exc))


class ShardEmbedder:
    """A Ray Data actor: loads the model once, then embeds and writes one shard per row it is given."""

    def __init__(self, model: str, output: str, *, modality: str | None, cache: str | None, threads: int,
                 embed_rows: int, options: dict):
        import torch

        import zoo

        torch.set_num_threads(max(1, threads))
        self.model = zoo.load(model)
        self.output, self.modality, self.embed_rows, self.options = Path(output), modality, embed_rows, options
        self.cache, self._hits = None, 0
        if cache:
            from zoo.data.cache import EmbeddingCache

            self.cache = EmbeddingCache(cache)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        done = [self.run(json.loads(task)) for task in batch["task"]]
        return {key: np.array([d[key] for d in done]) for key in done[0]}

    def _embed(self, items: list, *, cached: bool = True):
        cache = self.cache if cached else None
        hits = cache.hits if cache is not None else 0
        out = self.model.embed(items, modality=self.modality, cache=cache, **self.options)
        self._hits += (cache.hits - hits) if cache is not None else 0
        return out.vectors

    def _embed_one(self, item: Any):
        """One item's vector. Where the cache refuses the item (it cannot key or read it), the model is asked
        without the cache, so an item is recorded as bad with the model's own reason, or embedded after all."""
        try:
            return self._embed([item])
        except InvalidInputError:
            if self.cache is None:
                raise
        return self._embed([item], cached=False)

    def embed_items(self, items: list) -> tuple[list[int], Any, list[tuple[int, str]]]:
        """(indices embedded, their vectors, (index, reason) of bad items), batch by batch."""
        import numpy as np

        good, vectors, bad = [], [], []
        for start in range(0, len(items), self.embed_rows):
            chunk = items[start:start + self.embed_rows]
            try:
                vectors.append(self._embed(chunk))
                good.extend(range(start, start + len(chunk)))
                continue
            except InvalidInputError:
                pass
            for i, item in enumerate(chunk, start):  # find the bad ones: item by item
                try:
                    vectors.append(self._embed_one(item))
                    good.append(i)
                except InvalidInputError as exc:
                    bad.append((i, _reason(exc)))
        dim = self.model.dim
        return good, np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32), bad

    def metadata(self) -> dict[bytes, bytes]:
        card = self.model.card
        facts = {"space": card.space, "model": card.name, "revision": self.model.resolved.revision,
                 "origin": self.model.resolved.origin, "card_sha256": card_sha256(card), "dim": str(self.model.dim),
                 "modality": self.modality or "", "options": json.dumps(self.options, sort_keys=True)}
        return {f"zoo.{k}".encode(): str(v).encode() for k, v in facts.items()}

    @staticmethod
    def items_of(task: dict) -> tuple[list, list, Any]:
        """A shard's items, their ids and the ids' Arrow type: row numbers of texts (or the values of the id
        column), or relative file paths."""
        import pyarrow as pa

        if "pieces" in task and task.get("id_column"):
            items, ids = [], []
            for f, a, b in task["pieces"]:
                got = read_columns(f, [task["column"], task["id_column"]], a, b)
                items += got[task["column"]]
                ids += got[task["id_column"]]
            return items, ids, pa.string() if task["id_kind"] == "str" else pa.int64()
        if "pieces" in task:
            items = [x for f, a, b in task["pieces"] for x in read_rows(f, task["column"], a, b)]
            return items, list(range(task["start"], task["start"] + len(items))), pa.int64()
        return [Path(p) for p in task["paths"]], task["ids"], pa.string()

    def run(self, task: dict) -> dict:
        """Embed one shard; write its errors (if any), then its vectors, then the record that vouches for both.

        An input that cannot be read is reported in the status row's ``error`` (the driver raises it as one
        line naming the file), not raised here, where Ray would wrap it in a worker traceback.
        """
        import numpy as np
        import pyarrow as pa

        self._hits, started = 0, time.perf_counter()
        try:
            items, ids, id_type = self.items_of(task)
        except (pa.ArrowException, OSError, ValueError) as exc:
            files = ", ".join(sorted({f for f, _, _ in task.get("pieces", ())})) or "its files"
            return {"name": task["name"], "rows": 0, "bad": 0, "cache_hits": 0, "seconds": 0.0,
                    "error": f"{files}: cannot read the rows of shard {task['name']} "
                             f"(input cut short or corrupt?): {_one_line(exc)}"}
        good, vectors, bad = self.embed_items(items)
        errors, errors_sha = self.output / ERRORS_DIR / task["name"], None
        _record_path(self.output, task["name"]).unlink(missing_ok=True)  # the old record vouches for old files
        if bad:
            table = pa.table({"id": pa.array([ids[i] for i, _ in bad], id_type),
                              "reason": pa.array([r for _, r in bad], pa.string())})
            errors_sha = _write_atomic(table, errors)
        else:
            errors.unlink(missing_ok=True)  # a stale one from a run with other input
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
        table = pa.table({"id": pa.array([ids[i] for i in good], id_type),
                          "vector": pa.FixedSizeListArray.from_arrays(flat, self.model.dim)})
        sha = _write_atomic(table.replace_schema_metadata(self.metadata()), self.output / task["name"])
        _write_record(self.output, task["name"], {"items": len(items), "rows": len(good), "bad": len(bad),
                                                  "sha256": sha, "errors_sha256": errors_sha})
        return {"name": task["name"], "rows": len(good), "bad": len(bad), "cache_hits": self._hits,
                "seconds": time.perf_counter() - started, "error": ""}
