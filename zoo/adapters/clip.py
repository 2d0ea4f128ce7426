"""CLIP-style image-text embedders on open_clip, and the image pipeline the image adapters share.

``OpenCLIPEmbedder`` loads a snapshot folder holding ``open_clip_config.json`` (``model_cfg`` +
``preprocess_cfg``) and ``open_clip_model.safetensors``, as the laion and timm hub repos do; the card's
``options.quick_gelu = true`` forces QuickGELU (OpenAI weights need it). Ad-hoc ``open_clip:ARCH[/TAG]`` cards
(``zoo.adhoc``) name an open_clip architecture instead (``options.open_clip_arch``): the model is built from
open_clip's own config for it with the tag's preprocessing (``options.preprocess``), then the tag's checkpoint is
loaded; a card without a tag (``options.random_weights``) is built with seeded random weights, and only when the
caller passes ``pretrained=False``. A pickle checkpoint is read by open_clip only after ``torch.load(weights_only=
True)`` accepted it (open_clip itself retries without ``weights_only`` when that call raises TypeError). Images go
through open_clip's own eval transform and ``encode_image``, texts through open_clip's tokenizer. Speed, with
unchanged vectors:

- images are decoded (``zoo.images``) and preprocessed in a few threads running a bounded number of items ahead
  of the model, so decoding overlaps compute; batches keep the caller's order;
- open_clip pads every text to 77 tokens. In a causal text tower pooled at the end-of-text token, nothing after
  that token reaches it, so texts are sorted by length and each batch runs on the context cut to its longest
  text (``CausalText``; tests/test_clip.py proves it equal to ``encode_text``). Other towers use ``encode_text``;
- images so elongated that the shortest-side resize would be huge (a 1x10000 strip becomes 224 x 2,240,000) are
  resampled inside the center-crop box only, with the transform's own size and filter (``strip_safe``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.adapters.base import BaseEmbedder, EmbedContext
from zoo.adapters.text import check_texts
from zoo.adapters.text_backends import torch_settings
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import Resolved, check_format, hf_cache_dir
from zoo.errors import (
    InputTooLargeError,
    IntegrityError,
    InvalidInputError,
    UnknownModelError,
    UnsafeModelFileError,
    WeightsUnavailableError,
    require,
)
from zoo.inputs import images

DEFAULT_IMAGE_BATCH = 32
DEFAULT_TEXT_BATCH = 256
#: Images whose shortest-side resize would exceed this many pixels are resampled inside the crop box only.
LONG_STRIP_PIXELS = 16_000_000
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors")
PICKLE_WEIGHT_FILES = ("open_clip_pytorch_model.bin",)


# -- images: checked up front, decoded and preprocessed in threads ---------------------------------------------------


def check_images(inputs: list) -> list:
    """Validate every image before any model work, naming the index of a bad one.

    In-memory images (PIL, arrays, tensors) are converted now by ``zoo.images.load_image``. Files and bytes
    are checked from their header here (existence, size, format, pixel count) and decoded later, in the
    pipeline threads, by the same ``load_image``; a file corrupt past its header fails there, with its index.
    """
    out = []
    for i, item in enumerate(inputs):
        if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
            images.probe_image(item, index=i)
            out.append(item if isinstance(item, (str, os.PathLike, bytes)) else bytes(item))
        else:
            out.append(images.load_image(item, index=i))
    return out


def decode(item: Any, index: int):
    """An RGB PIL image from a checked item (already decoded, or a file/bytes decoded now)."""
    from PIL import Image

    from zoo.inputs.images import load_image

    return item if isinstance(item, Image.Image) else load_image(item, index=index)


def prepared_batches(items: list, prepare: Callable[[int, Any], torch.Tensor], *, batch_size: int,
                     workers: int, ahead: int | None = None) -> Iterator[torch.Tensor]:
    """Yield stacked ``prepare(i, item)`` tensors in order, ``batch_size`` rows at a time.

    ``workers`` threads prepare items at most ``ahead`` (default two batches) in front of the consumer, so
    decoding overlaps whatever the consumer does between batches while memory stays bounded. An error in
    ``prepare`` is raised at its item's turn; items queued behind it are cancelled. ``workers=0`` runs inline.
    """
    if workers <= 0:
        for start in range(0, len(items), batch_size):
            yield torch.stack([prepare(start + j, x) for j, x in enumerate(items[start : start + batch_size])])
        return
    ahead = max(ahead or 2 * batch_size, 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zoo-images") as pool:
        pending: deque = deque()
        todo = iter(enumerate(items))

        def refill() -> None:
            while len(pending) < ahead and (nxt := next(todo, None)) is not None:
                pending.append(pool.submit(prepare, *nxt))

        refill()
        batch: list[torch.Tensor] = []
        try:
            while pending:
                batch.append(pending.popleft().result())
                refill()
                if len(batch) == batch_size or not pending:
                    yield torch.stack(batch)
                    batch = []
        finally:
            for fut in pending:
                fut.cancel()


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def strip_safe(transform: Callable) -> Callable:
    """Wrap an open_clip eval transform so very elongated images are resampled inside the crop box only.

    Applies when the transform starts with torchvision ``Resize(int)`` (shortest side) + ``CenterCrop``; the
    box is where the crop lands in the resized image, mapped back to source pixels, and PIL resamples it with
    the transform's own filter, size and crop. Other transforms are returned unchanged.
    """
    from PIL import Image
    from torchvision import transforms as T
    from torchvision.transforms import functional as TF

    steps = getattr(transform, "transforms", [])
    if (len(steps) < 2 or not isinstance(steps[0], T.Resize) or not isinstance(steps[1], T.CenterCrop)
            or steps[0].max_size is not None):
        return transform
    resize, crop, rest = steps[0], steps[1], T.Compose(steps[2:])
    size = resize.size if isinstance(resize.size, int) else (resize.size[0] if len(resize.size) == 1 else None)
    if size is None:
        return transform
    ch, cw = crop.size
    resample = TF.pil_modes_mapping[resize.interpolation]

    def apply(img):
        w, h = img.size
        nh, nw = TF._compute_resized_output_size((h, w), [size], None)
        if nh * nw <= LONG_STRIP_PIXELS or nh < ch or nw < cw or not isinstance(img, Image.Image):
            return transform(img)
        top, left = int(round((nh - ch) / 2.0)), int(round((nw - cw) / 2.0))
        sx, sy = w / nw, h / nh
        box = (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
        return rest(img.resize((cw, ch), resample, box=box))

    return apply


# -- texts: the causal tower cut to the longest text of the batch ----------------------------------------------------


@dataclass
class CausalText:
    """open_clip's text forward on a context cut to the batch's longest text (causal towers only).

    Mirrors ``CLIP.encode_text`` / ``TextTransformer.forward``: token embedding + positional embedding,
    transformer with the causal mask, ``ln_final``, pooling at the end-of-text position, projection. With a
    causal mask the state at position p depends on tokens 0..p only, so cutting everything after the last
    pooled position changes nothing.
    """

    token_embedding: torch.nn.Module
    positional_embedding: torch.Tensor
    transformer: torch.nn.Module
    attn_mask: torch.Tensor
    ln_final: torch.nn.Module
    text_projection: Any
    pool_type: str
    eos_id: int | None

    @classmethod
    def of(cls, model) -> CausalText | None:
        """The parts of ``model``'s text tower, or None where cutting the context would change vectors."""
        from open_clip.transformer import TextTransformer

        tower = getattr(model, "text", None)
        if tower is not None:  # CustomTextCLIP
            if (not isinstance(tower, TextTransformer) or tower.cls_emb is not None or tower.use_pad_mask
                    or tower.output_tokens):
                return None
            pool, eos = tower.pool_type, tower.eos_id
        else:
            tower = model
            pool, eos = getattr(model, "text_pool_type", None), getattr(model, "text_eos_id", None)
        needed = ("token_embedding", "positional_embedding", "transformer", "attn_mask", "ln_final", "text_projection")
        if pool not in ("argmax", "eos") or not all(hasattr(tower, a) for a in needed):
            return None
        mask, n = tower.attn_mask, tower.positional_embedding.shape[0]
        causal = torch.full((n, n), float("-inf")).triu_(1)
        if mask is None or tuple(mask.shape) != (n, n) or not torch.equal(mask.detach().cpu().float(), causal):
            return None
        return cls(tower.token_embedding, tower.positional_embedding, tower.transformer, tower.attn_mask,
                   tower.ln_final, tower.text_projection, pool, eos)

    def pooled_positions(self, ids: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "argmax":
            return ids.argmax(dim=-1)
        return (ids == self.eos_id).int().argmax(dim=-1)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        pos = self.pooled_positions(ids)
        n = int(pos.max()) + 1
        ids = ids[:, :n]
        cast = self.transformer.get_cast_dtype()
        x = self.token_embedding(ids).to(cast) + self.positional_embedding[:n].to(cast)
        x = self.transformer(x, attn_mask=self.attn_mask[:n, :n])
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), pos]
        proj = self.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj


@contextlib.contextmanager
def _quiet_open_clip() -> Iterator[None]:
    """Drop open_clip's root-logger warning that a model built before its checkpoint is loaded starts random."""

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING or "open_clip" not in record.pathname

    logging.root.addFilter(keep)
    try:
        yield
    finally:
        logging.root.removeFilter(keep)


def weights_file(folder: Path, card: ModelCard) -> Path:
    """The checkpoint to load: safetensors first; the pickle file only where the card allows weights-only loads."""
    names = WEIGHT_FILES + (PICKLE_WEIGHT_FILES if card.weights_format == "torch-weights-only" else ())
    for name in names:
        if (folder / name).is_file():
            return folder / name
    check_format(folder, card)  # only pickle files there: refuse them by name
    raise WeightsUnavailableError(f"{card.name}: {folder} holds none of {', '.join(names)}")


def checked_pickle(path: Path, card: ModelCard) -> None:
    """Refuse a pickle checkpoint that ``torch.load(weights_only=True)`` does not accept, before open_clip reads it.

    open_clip's ``load_state_dict`` calls ``torch.load(weights_only=True)`` but retries without it when that call
    raises TypeError; a file the restricted unpickler refuses never gets that far.
    """
    if card.weights_format != "torch-weights-only":
        raise UnsafeModelFileError(f"{card.name}: {path.name} is a pickle file and the card allows safetensors only")
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise WeightsUnavailableError(f"{card.name}: no weight file {path}") from exc
    except Exception as exc:  # the restricted unpickler refuses anything but tensors and plain containers
        raise UnsafeModelFileError(f"{card.name}: {path.name} is not a plain weights file "
                                   f"(torch.load(weights_only=True) refused it: {exc})") from exc


def _hf_hint(open_clip, arch: str, key: str, what: str) -> str:
    """Where an architecture's Hugging Face text part comes from, for an error: ``key`` of its text config
    (``hf_model_name`` or ``hf_tokenizer_name``) names the hub repository open_clip reads it from."""
    repo = ((open_clip.get_model_config(arch) or {}).get("text_cfg") or {}).get(key) or ""
    if not repo:
        return ""
    return (f": its {what} is the Hugging Face repository {repo}, not in the cache {hf_cache_dir()}; get it with "
            f"`hf download {repo}` on a machine with network and bring the cache here, or load once with "
            "downloads allowed")


def _named_tokenizer(open_clip, card: ModelCard):
    """open_clip's tokenizer for an ``open_clip:`` name; one from the Hugging Face hub that is not cached (SigLIP,
    XLM-R and other HF text towers) is a WeightsUnavailableError naming its repository."""
    arch = card.options["open_clip_arch"]
    try:
        with _quiet_open_clip():
            return open_clip.get_tokenizer(arch)
    except (OSError, ValueError) as exc:
        hint = _hf_hint(open_clip, arch, "hf_tokenizer_name", "tokenizer")
        if not hint:
            raise
        raise WeightsUnavailableError(f"{card.name}: open_clip could not make the tokenizer of {arch}{hint} "
                                      f"({type(exc).__name__}: {' '.join(str(exc).split())})") from exc


def named_model(open_clip, card: ModelCard, folder: Path, pretrained: bool | None):
    """Model and eval transform of an ad-hoc ``open_clip:ARCH[/TAG]`` card, with its weights (or random ones).

    Built as ``open_clip.create_model_and_transforms(ARCH, pretrained=TAG)`` builds it, except that QuickGELU
    follows the tag (open_clip only warns when the tag's weights were trained with it) and the checkpoint is the
    file the card resolved from the Hugging Face cache.
    """
    arch, random = card.options["open_clip_arch"], bool(card.options.get("random_weights"))
    if random and pretrained is not False:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise UnknownModelError(card.name, [f"open_clip:{arch}/{t}" for t in tags], hint=(
            f"open_clip:{arch} names no pretrained tag, so it has no trained weights: name one of its tags, or pass "
            "pretrained=False to zoo.load to build it with random weights" if tags else
            f"open_clip lists no weights for {arch}: pass pretrained=False to zoo.load to build it with random "
            "weights"))
    if not random and pretrained is False:
        raise InvalidInputError(f"{card.name} names the pretrained tag {card.options.get('open_clip_tag')!r}; "
                                f"pretrained=False (random weights) is for open_clip:{arch} without a tag")
    pp = card.options.get("preprocess", {})
    try:
        with _quiet_open_clip(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(card.options.get("seed", 0)))
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=None, force_quick_gelu=bool(card.options.get("quick_gelu", False)),
                image_mean=pp.get("mean"), image_std=pp.get("std"), image_interpolation=pp.get("interpolation"),
                image_resize_mode=pp.get("resize_mode"), pretrained_text=False)
    except (OSError, RuntimeError, ValueError) as exc:  # e.g. a Hugging Face text tower whose config is not cached
        raise WeightsUnavailableError(f"{card.name}: open_clip could not build {arch}"
                                      f"{_hf_hint(open_clip, arch, 'hf_model_name', 'text tower config')} "
                                      f"({type(exc).__name__}: {' '.join(str(exc).split())})") from exc
    if not random:
        checkpoint = folder / card.options["weights_file"]
        if checkpoint.suffix != ".safetensors":
            checked_pickle(checkpoint, card)
        open_clip.load_checkpoint(model, str(checkpoint), strict=True, weights_only=True)
    return model, preprocess


class OpenCLIPEmbedder(BaseEmbedder):
    """An open_clip image-text model. A list of str is embedded as text, anything else as images.

    Options (keyword-only): ``device`` ("cpu", "cuda", ...), ``compute_dtype`` ("float32", the default,
    "float16" or "bfloat16": the weights and activations; vectors come back float32), ``workers`` (image
    decoding threads, default min(4, CPUs); 0 decodes inline), ``trim_text`` (cut the text context on
    causal towers, default True), ``pretrained`` (only ``False``, only for an ``open_clip:ARCH`` name without a
    tag: random weights, with a warning).
    """

    def __init__(self, card: ModelCard, resolved: Resolved, *, device: str = "cpu", compute_dtype: str = "float32",
                 workers: int | None = None, trim_text: bool = True, trust_remote_code: bool = False,
                 pretrained: bool | None = None, **options: Any):
        super().__init__(card, resolved, **options)
        open_clip = require("open_clip", extra="vision", purpose=f"{card.name} (open_clip)")
        folder = Path(resolved.path)
        self.device, self.compute_dtype = torch_settings(self, device, compute_dtype)
        self.workers = default_workers() if workers is None else int(workers)
        if "open_clip_arch" in card.options:  # an ad-hoc open_clip:ARCH[/TAG] name
            model, preprocess = named_model(open_clip, card, folder, pretrained)
            tokenizer = _named_tokenizer(open_clip, card)
            made = card.options.get("weights_file", "random weights")
        else:
            if pretrained is False:
                raise InvalidInputError(f"{card.name} is a registered model with trained weights; pretrained=False "
                                        "(random weights) is for open_clip:ARCH names without a tag")
            if not (folder / "open_clip_config.json").is_file():
                raise WeightsUnavailableError(f"{card.name}: {folder} has no open_clip_config.json")
            checkpoint = weights_file(folder, card)
            quick = bool(card.options.get("quick_gelu", False))
            with _quiet_open_clip():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    f"local-dir:{folder}", load_weights=False, force_quick_gelu=quick, pretrained_text=False)
            if checkpoint.suffix != ".safetensors":
                checked_pickle(checkpoint, card)
            open_clip.load_checkpoint(model, str(checkpoint), strict=True, weights_only=True)
            tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
            made = checkpoint.name
        self.model = model.eval().to(self.device, self.compute_dtype)
        self.preprocess = strip_safe(preprocess)
        self.tokenizer = tokenizer
        out_dim = getattr(model.visual, "output_dim", card.dim)
        if out_dim != card.dim:
            raise IntegrityError(f"{card.name}: {made} gives {out_dim}-d vectors, the card {card.dim}")
        if card.options.get("random_weights"):
            warnings.warn(f"{card.name}: RANDOM weights (pretrained=False, seed {card.options.get('seed', 0)}): "
                          "not a trained model, its vectors mean nothing; name a pretrained tag for real weights",
                          UserWarning, stacklevel=3)
        self.text_tower = CausalText.of(model) if trim_text else None

    # -- hooks -------------------------------------------------------------------------------------------------------
    def _infer_modality(self, inputs: list) -> str:
        return "text" if all(isinstance(x, str) for x in inputs) else "image"

    def _check(self, inputs: list, modality: str) -> list:
        return check_texts(inputs) if modality == "text" else check_images(inputs)

    def _encode(self, items: list, modality: str, ctx: EmbedContext) -> np.ndarray:
        if modality == "text":
            return self._encode_texts(items, ctx)
        return self._encode_images(items, ctx)

    # -- images ------------------------------------------------------------------------------------------------------
    def _prepare(self, index: int, item: Any) -> torch.Tensor:
        return self.preprocess(decode(item, index))

    @torch.inference_mode()
    def _encode_images(self, items: list, ctx: EmbedContext) -> np.ndarray:
        out, row = np.empty((len(items), self.dim), dtype=np.float32), 0
        for batch in prepared_batches(items, self._prepare, batch_size=ctx.batch_size or DEFAULT_IMAGE_BATCH,
                                      workers=self.workers):
            emb = self.model.encode_image(batch.to(self.device, self.compute_dtype))
            out[row : row + len(emb)] = emb.float().cpu().numpy()
            row += len(emb)
            ctx.advance(len(emb))
        return out

    # -- texts -------------------------------------------------------------------------------------------------------
    def _truncated(self, texts: list[str], ids: torch.Tensor) -> list[int]:
        """Indices of texts open_clip's tokenizer cut to fit its context (SimpleTokenizer only)."""
        tok, n = self.tokenizer, ids.shape[1]
        if not hasattr(tok, "encode") or getattr(tok, "reduction_fn", None) is not None:
            return []
        full = (ids[:, -1] != 0).nonzero().flatten().tolist()  # only a filled row can have been cut
        return [i for i in full if len(tok.encode(texts[i])) + 2 > n]

    @torch.inference_mode()
    def _encode_texts(self, texts: list[str], ctx: EmbedContext) -> np.ndarray:
        ids = self.tokenizer(texts)
        cut = self._truncated(texts, ids)
        if cut:
            if not ctx.truncate:
                raise InputTooLargeError(f"text is over {self.name}'s limit of {ids.shape[1]} tokens "
                                         "(pass truncate=True to cut it)", index=cut[0], limit=ids.shape[1])
            ctx.info["truncated"] = len(cut)
            self.warn_once("truncate", f"texts longer than {ids.shape[1]} tokens are truncated to fit")
        size = ctx.batch_size or DEFAULT_TEXT_BATCH
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        tower = self.text_tower
        ctx.info["text_context"] = "trimmed" if tower is not None else "full"
        order = (torch.argsort(tower.pooled_positions(ids), stable=True) if tower is not None
                 else torch.arange(len(texts)))
        for start in range(0, len(texts), size):
            rows = order[start : start + size]
            batch = ids[rows].to(self.device)
            emb = tower(batch) if tower is not None else self.model.encode_text(batch)
            out[rows.numpy()] = emb.float().cpu().numpy()
            ctx.advance(len(rows))
        return out
