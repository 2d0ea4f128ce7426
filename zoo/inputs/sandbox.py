"""Decoder worker processes: C decoders (libsndfile, FFmpeg, PDFium) parse untrusted bytes outside the caller.

One reusable worker per kind of input ("audio", "video", "document"), started on first use as
``python -m zoo.inputs.sandbox KIND MEMORY`` with ``RLIMIT_AS`` set to the kind's memory limit, no core dumps, one
BLAS/OpenMP thread, and a wall-clock limit per item. A worker serves one request at a time behind its lock.

Protocol (nothing untrusted is pickled): the parent writes a 4-byte length, a small JSON header (the decoder's
parameters) and an 8-byte length followed by the file's bytes; the worker answers with a 4-byte length, a JSON
header that says how many raw payload bytes follow (``nbytes``), and that payload (samples, pixels), which the
kind's module interprets. A worker that crashes, hangs or runs out of memory becomes an InvalidInputError for
that item only; it is killed and a fresh one starts on the next call. Errors the decoder raises cross the pipe
as their type (``InputTooLargeError`` with its limit, or ``InvalidInputError``) and their message.

The decoder of each kind is ``serve(header, data) -> (reply, chunks)`` in its module (``DECODERS``): ``reply`` is
the JSON header's content and ``chunks`` the payload's bytes-like pieces, written one after the other.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import selectors
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from zoo.errors import InputTooLargeError, InvalidInputError

#: kind -> "module:function" that decodes one request inside the worker.
DECODERS = {"audio": "zoo.inputs.audio:serve", "video": "zoo.inputs.video:serve",
            "document": "zoo.inputs.documents:serve"}


class Sandbox:
    """The parent's handle on one kind's worker: started lazily, replaced after a crash or a timeout."""

    def __init__(self, kind: str, memory_bytes: int):
        self.kind, self.memory_bytes = kind, memory_bytes
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        root = str(Path(__file__).resolve().parents[2])  # the folder holding the zoo package
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        return subprocess.Popen([sys.executable, "-m", "zoo.inputs.sandbox", self.kind, str(self.memory_bytes)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                bufsize=0, env=env)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def forget(self) -> None:
        """In a forked child: the parent's pipes are not ours to use."""
        self.lock, self.proc = threading.Lock(), None

    def run(self, params: dict, data: bytes, *, index: int, timeout: float, hook: str | None = None
            ) -> tuple[dict, bytearray]:
        """Decode ``data`` in the worker: the reply header and payload, or the decoder's error naming ``index``."""
        head = json.dumps({**params, "hook": hook}).encode()
        request = struct.pack(">I", len(head)) + head + struct.pack(">Q", len(data)) + data
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.stop()
                self.proc = self._start()
            try:
                header, payload = _exchange(self.proc, request, timeout)
            except TimeoutError:
                self.stop()
                raise InvalidInputError(f"{self.kind} decoder took over {timeout:g} s and was stopped",
                                        index=index) from None
            except (RuntimeError, OSError, ValueError):
                code = self.proc.wait() if self.proc is not None else None
                self.proc = None
                raise InvalidInputError(f"{self.kind} decoder crashed on this file (exit status {code})",
                                        index=index) from None
            except BaseException:  # e.g. KeyboardInterrupt mid-exchange: the worker's state is unknown, so drop it
                self.stop()
                raise
        if not header["ok"]:
            if header["kind"] == "too_large":
                raise InputTooLargeError(header["message"], index=index, limit=header.get("limit"))
            raise InvalidInputError(header["message"], index=index)
        return header, payload


def _exchange(proc: subprocess.Popen, request: bytes, timeout: float) -> tuple[dict, bytearray]:
    """Write ``request`` and read one reply, never blocking past ``timeout``; raise RuntimeError on a dead worker."""
    deadline = time.monotonic() + timeout
    win, rout = proc.stdin.fileno(), proc.stdout.fileno()
    os.set_blocking(win, False)
    os.set_blocking(rout, False)
    view, sent, buf, header, need = memoryview(request), 0, bytearray(), None, None
    with selectors.DefaultSelector() as sel:
        sel.register(win, selectors.EVENT_WRITE)
        sel.register(rout, selectors.EVENT_READ)
        while need is None or len(buf) < need:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            for key, _ in sel.select(left):
                if key.fd == win:
                    try:
                        sent += os.write(win, view[sent:sent + (1 << 20)])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # the worker died; its stdout's EOF says so below
                        sent = len(view)
                    if sent >= len(view):
                        sel.unregister(win)
                    continue
                chunk = os.read(rout, 1 << 22)
                if not chunk:
                    raise RuntimeError
                buf += chunk
                if header is None and len(buf) >= 4:
                    hlen = struct.unpack_from(">I", buf)[0]
                    if len(buf) >= 4 + hlen:
                        header = json.loads(bytes(buf[4:4 + hlen]))
                        need = 4 + hlen + int(header.get("nbytes", 0))
    start = need - int(header.get("nbytes", 0))
    return header, buf[start:need]  # writable: arrays made on it need no copy


_sandboxes: dict[str, Sandbox] = {}
_registry_lock = threading.Lock()


def sandbox(kind: str, memory_bytes: int) -> Sandbox:
    """The one worker handle of ``kind`` in this process."""
    with _registry_lock:
        if kind not in _sandboxes:
            _sandboxes[kind] = Sandbox(kind, memory_bytes)
        return _sandboxes[kind]


def _stop_all() -> None:
    for box in list(_sandboxes.values()):
        box.stop()


def _forget_all_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for box in _sandboxes.values():
        box.forget()


atexit.register(_stop_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all_in_child)


# ---------------------------------------------------------------- worker side
def _worker_main(kind: str, memory_bytes: int) -> None:
    """Worker loop: requests on stdin, replies on the original stdout (fd 1 then points to stderr)."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if hasattr(resource, "RLIMIT_AS"):
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    module, _, name = DECODERS[kind].partition(":")
    decode = getattr(importlib.import_module(module), name)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints from C code must not corrupt the protocol
    inp = sys.stdin.buffer
    while True:
        raw = inp.read(4)
        if len(raw) < 4:
            return
        head = json.loads(inp.read(struct.unpack(">I", raw)[0]))
        data = inp.read(struct.unpack(">Q", inp.read(8))[0])
        if head.get("hook") == "abort":
            os.abort()
        if head.get("hook") == "exit":
            os._exit(3)
        if head.get("hook") == "hang":
            time.sleep(3600)
        chunks: Any = ()
        try:
            reply, chunks = decode(head, data)
            reply = {"ok": True, **reply, "nbytes": sum(memoryview(c).nbytes for c in chunks)}
        except InputTooLargeError as exc:
            reply = {"ok": False, "kind": "too_large", "message": str(exc), "limit": exc.limit}
        except InvalidInputError as exc:
            reply = {"ok": False, "kind": "invalid", "message": str(exc)}
        except MemoryError:
            reply = {"ok": False, "kind": "invalid", "message": f"{kind} decoder ran out of memory"}
        except Exception as exc:  # noqa: BLE001 - anything else is still this item's fault
            reply = {"ok": False, "kind": "invalid", "message": f"cannot decode {kind}: {exc}"}
        if not reply["ok"]:
            chunks = ()
        blob = json.dumps(reply).encode()
        out.write(struct.pack(">I", len(blob)) + blob)
        for chunk in chunks:
            out.write(chunk)
        out.flush()
        del chunks, data


if __name__ == "__main__":
    _worker_main(sys.argv[1], int(sys.argv[2]))
