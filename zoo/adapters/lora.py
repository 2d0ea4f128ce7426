"""LoRA and DoRA adapters merged into base weights, without peft.

A peft LoRA adapter is a folder with ``adapter_config.json`` and ``adapter_model.safetensors``
(or the older pickle ``adapter_model.bin``). Its keys name the adapted modules of the model it
was trained on, under peft's wrapper prefix:
``base_model.model.<module>.lora_A.weight``, ``....lora_B.weight`` and, for DoRA,
``....lora_magnitude_vector`` (older peft) or ``....lora_magnitude_vector.weight``.

Merging follows peft's ``merge_and_unload`` for ``nn.Linear`` layers:

- LoRA: ``W' = W + s * B @ A`` with ``s = lora_alpha / r`` (``lora_alpha / sqrt(r)`` with rsLoRA;
  ``rank_pattern`` / ``alpha_pattern`` override r and alpha per module);
- DoRA: ``V = W + s * B @ A``, then ``W' = (m / ||V||_row) * V``, the L2 norm taken over each
  output row of the ``[out, in]`` weight (peft ``DoraLinearLayer.get_weight_norm``).

The arithmetic is done in float32 and cast back to the weight's dtype (peft computes in the
weight's dtype; for float32 weights the two agree to rounding).

Module names can be renamed before they are looked up (``rename``: regex -> replacement pairs),
for adapters trained on an older module layout than the installed transformers builds
(VLM2Vec's Qwen2-VL adapters name ``model.layers.N``; transformers 5 has
``model.language_model.layers.N``). Every adapted module must exist in the model with the
adapter's shapes, or nothing is merged.

Pickle adapter files are opened only with ``torch.load(weights_only=True)`` and only when the
card allows them. This module never imports peft.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import CardError, IntegrityError, UnsafeModelFileError, WeightsUnavailableError

CONFIG_FILE = "adapter_config.json"
SAFETENSORS_FILE = "adapter_model.safetensors"
PICKLE_FILE = "adapter_model.bin"
PEFT_PREFIX = "base_model.model."
_SUFFIXES = {
    ".lora_A.weight": "A",
    ".lora_B.weight": "B",
    ".lora_magnitude_vector.weight": "m",
    ".lora_magnitude_vector": "m",
}


@dataclass(frozen=True)
class LoraConfig:
    """The parts of a peft ``LoraConfig`` that decide the merged weights."""

    r: int
    lora_alpha: float
    use_dora: bool = False
    use_rslora: bool = False
    fan_in_fan_out: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LoraConfig:
        """Validate a parsed ``adapter_config.json``; refuse what this merger cannot reproduce."""
        if raw.get("peft_type", "LORA") != "LORA":
            raise CardError(f"adapter is {raw.get('peft_type')!r}, only LORA (and DoRA) adapters can be merged")
        if raw.get("bias", "none") != "none" or raw.get("lora_bias"):
            raise CardError("adapters that train biases cannot be merged by zoo.lora")
        if raw.get("modules_to_save"):
            raise CardError(f"adapter saves whole modules ({raw['modules_to_save']}); zoo.lora merges LoRA only")
        if not isinstance(raw.get("r"), int) or raw["r"] < 1:
            raise CardError(f"adapter_config.json: r must be a positive integer, not {raw.get('r')!r}")
        return cls(
            r=raw["r"],
            lora_alpha=float(raw.get("lora_alpha", 8)),
            use_dora=bool(raw.get("use_dora", False)),
            use_rslora=bool(raw.get("use_rslora", False)),
            fan_in_fan_out=bool(raw.get("fan_in_fan_out", False)),
            rank_pattern=dict(raw.get("rank_pattern") or {}),
            alpha_pattern=dict(raw.get("alpha_pattern") or {}),
        )

    def scaling(self, module: str) -> float:
        """``alpha / r`` (or ``alpha / sqrt(r)``) for one module, after the per-module patterns."""
        r = _pattern_value(self.rank_pattern, module, self.r)
        alpha = _pattern_value(self.alpha_pattern, module, self.lora_alpha)
        return alpha / math.sqrt(r) if self.use_rslora else alpha / r


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    for key, value in patterns.items():  # peft matches a pattern against the end of the module name
        if re.fullmatch(rf"(.*\.)?{key}", module):
            return value
    return default


def read_adapter(folder: Path, *, allow_pickle: bool) -> tuple[LoraConfig, dict[str, Any]]:
    """Read ``adapter_config.json`` and the adapter tensors from ``folder``.

    ``adapter_model.safetensors`` is preferred. ``adapter_model.bin`` is read only when
    ``allow_pickle`` (the card says so), and then only with ``torch.load(weights_only=True)``.
    """
    import torch

    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise WeightsUnavailableError(f"adapter folder {folder} has no {CONFIG_FILE}")
    config = LoraConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    if (folder / SAFETENSORS_FILE).is_file():
        from safetensors.torch import load_file

        return config, load_file(str(folder / SAFETENSORS_FILE), device="cpu")
    if (folder / PICKLE_FILE).is_file():
        if not allow_pickle:
            raise UnsafeModelFileError(
                f"adapter {folder} ships only the pickle {PICKLE_FILE}; the card allows safetensors only"
            )
        try:
            state = torch.load(folder / PICKLE_FILE, map_location="cpu", weights_only=True)
        except Exception as exc:  # weights_only refuses anything but tensors and plain containers
            raise UnsafeModelFileError(
                f"{folder / PICKLE_FILE} is not a plain tensor file (torch.load weights_only=True refused it: "
                f"{type(exc).__name__})"
            ) from exc
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise UnsafeModelFileError(f"{folder / PICKLE_FILE} does not hold a dict of tensors")
        return config, state
    raise WeightsUnavailableError(f"adapter folder {folder} has neither {SAFETENSORS_FILE} nor {PICKLE_FILE}")


def group_by_module(state: dict[str, Any], rename: Iterable[tuple[str, str]] = ()) -> dict[str, dict[str, Any]]:
    """``{module name: {"A": ..., "B": ..., "m": ...}}`` from peft's saved keys, names renamed."""
    rules = [(re.compile(pattern), repl) for pattern, repl in rename]
    grouped: dict[str, dict[str, Any]] = {}
    for key, tensor in state.items():
        suffix = next((s for s in _SUFFIXES if key.endswith(s)), None)
        if suffix is None:
            raise CardError(f"adapter key {key!r} is not a LoRA/DoRA weight; zoo.lora cannot merge it")
        module = key[: -len(suffix)].removeprefix(PEFT_PREFIX)
        for pattern, repl in rules:
            module = pattern.sub(repl, module, count=1)
        part = _SUFFIXES[suffix]
        if part in grouped.setdefault(module, {}):
            raise CardError(f"adapter has two {part} tensors for module {module!r}")
        grouped[module][part] = tensor
    for module, parts in grouped.items():
        if "A" not in parts or "B" not in parts:
            raise CardError(f"adapter module {module!r} lacks lora_A or lora_B")
    return grouped


def merged_weight(weight: Any, a: Any, b: Any, scaling: float, *, magnitude: Any = None,
                  fan_in_fan_out: bool = False) -> Any:
    """The merged weight of one linear layer (see the module docstring for the formulas)."""
    w = weight.float().T if fan_in_fan_out else weight.float()  # [out, in]
    merged = w + scaling * (b.float() @ a.float())
    if magnitude is not None:
        import torch

        norm = torch.linalg.norm(merged, dim=1)
        merged = (magnitude.float().reshape(-1) / norm).view(-1, 1) * merged
    return (merged.T if fan_in_fan_out else merged).to(weight.dtype)


def merge_adapter(model: Any, config: LoraConfig, state: dict[str, Any], *,
                  rename: Iterable[tuple[str, str]] = ()) -> list[str]:
    """Merge the adapter into ``model``'s linear weights in place; return the merged module names.

    Every module is checked (exists, is linear, shapes fit) before any weight is changed.
    """
    import torch

    grouped = group_by_module(state, rename)
    modules = dict(model.named_modules())
    plan = []
    for name, parts in sorted(grouped.items()):
        module = modules.get(name)
        weight = getattr(module, "weight", None)
        if module is None or not isinstance(weight, torch.Tensor) or weight.ndim != 2:
            raise CardError(f"adapter targets {name!r}, which is not a linear layer of {type(model).__name__}")
        out_f, in_f = weight.shape[::-1] if config.fan_in_fan_out else weight.shape
        a, b, m = parts["A"], parts["B"], parts.get("m")
        if a.shape[1] != in_f or b.shape[0] != out_f or a.shape[0] != b.shape[1]:
            raise IntegrityError(f"adapter shapes A{tuple(a.shape)} B{tuple(b.shape)} do not fit {name} "
                                 f"{tuple(weight.shape)}")
        if config.use_dora and m is None:
            raise CardError(f"adapter says use_dora but has no magnitude vector for {name!r}")
        if m is not None and m.numel() != out_f:
            raise IntegrityError(f"DoRA magnitude of {name} has {m.numel()} values for {out_f} rows")
        plan.append((name, weight, a, b, m))
    with torch.no_grad():
        for name, weight, a, b, m in plan:
            weight.copy_(merged_weight(weight, a, b, config.scaling(name), magnitude=m,
                                       fan_in_fan_out=config.fan_in_fan_out))
    return [name for name, *_ in plan]


def resolve_adapter(card: Any, *, path: str | Path | None = None, download: bool | None = None) -> Path:
    """Find the folder of the LoRA adapter a card names (its hub source of role "adapter"), checked.

    Order as for base weights (zoo.sources): the caller's ``path`` (not hash-checked), then
    ``$ZOO_HOME/models/<card name>.lora``, then the Hugging Face cache at the pinned revision, then
    a hub download unless ZOO_OFFLINE/HF_HUB_OFFLINE (or ``download=False``) forbid it. Files the
    source pins by sha256 are hashed; a mismatch raises IntegrityError.
    """
    from zoo.catalog.sources import resolve_hub, zoo_home

    src = card.hub_role("adapter")
    if src is None:
        raise CardError(f"card {card.name!r} names no LoRA adapter (a hub source with role 'adapter')")
    if path is not None:
        folder = Path(path).expanduser()
        if not (folder / CONFIG_FILE).is_file():
            raise WeightsUnavailableError(f"{card.name}: adapter path {str(folder)!r} has no {CONFIG_FILE}")
        return folder
    try:
        return resolve_hub(card, src, download=download, local=zoo_home() / "models" / f"{card.name}.lora").path
    except WeightsUnavailableError as exc:
        raise WeightsUnavailableError(f"{exc} (or pass lora_path= to zoo.load)") from None
