"""safetensors checkpoints: atomic writes, self-describing metadata, never pickle.

A checkpoint holds tensors under prefixes (``G.``, ``D.``, ``G_ema.``, ``opt_G.``, ``opt_D.``, ``rng.``) and
string metadata: ``format``, ``format_version``, ``cgantool_version``, ``preset``, ``step``, and JSON for
``config`` (the resolved RunConfig), ``data_info`` (resolution, class names, ...), ``metrics`` and
``state`` (optimizer param groups, data position).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cgantool import __version__
from cgantool.config import RunConfig, config_to_dict, validate_config
from cgantool.errors import CheckpointError, ConfigError

FORMAT = "cgantool"
FORMAT_VERSION = 1
# Upgrades of older metadata: {from_version: function(meta) -> meta of from_version + 1}.
MIGRATIONS: dict[int, Any] = {}


@dataclass
class Checkpoint:
    """A loaded checkpoint's metadata; tensors are read on demand with :meth:`tensors`."""

    path: Path
    config: RunConfig
    preset: str
    step: int
    data_info: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """All tensors under ``prefix.`` with the prefix stripped (e.g. ``tensors('G')``)."""
        out = {}
        with safe_open(str(self.path), framework="pt") as f:
            for key in f.keys():
                if key.startswith(prefix + "."):
                    out[key[len(prefix) + 1 :]] = f.get_tensor(key)
        return out

    def has(self, prefix: str) -> bool:
        with safe_open(str(self.path), framework="pt") as f:
            return any(k.startswith(prefix + ".") for k in f.keys())


def _flatten_optimizer(name: str, opt_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[Any]]:
    tensors = {}
    for idx, per_param in opt_state["state"].items():
        for key, value in per_param.items():
            tensors[f"{name}.state.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, opt_state["param_groups"]


def unflatten_optimizer(flat: dict[str, torch.Tensor], param_groups: list[Any]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": param_groups}


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, fsync, then rename over ``path``: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_checkpoint(
    path: Path,
    *,
    config: RunConfig,
    step: int,
    data_info: dict[str, Any],
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    rng: dict[str, torch.Tensor] | None = None,
    metrics: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
) -> None:
    """Write one safetensors file atomically. ``modules`` maps prefix ("G", "D", "G_ema") → module."""
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{prefix}.{key}"] = value
    state = dict(state or {})
    for prefix, opt in (optimizers or {}).items():
        flat, groups = _flatten_optimizer(prefix, opt.state_dict())
        tensors.update(flat)
        state[f"{prefix}.param_groups"] = groups
    for key, value in (rng or {}).items():
        tensors[f"rng.{key}"] = value
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "cgantool_version": __version__,
        "preset": config.preset,
        "step": str(step),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": json.dumps(config_to_dict(config)),
        "data_info": json.dumps(data_info),
        "metrics": json.dumps(metrics or {}),
        "state": json.dumps(state),
    }
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and check a checkpoint's metadata; raises CheckpointError for anything that is not one."""
    path = Path(path)
    hint = "pass a .safetensors file written by `cgantool train` (RUN/checkpoints/last.safetensors)"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}", hint=hint)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:
        raise CheckpointError(f"{path} is not a cgantool checkpoint (not a safetensors file)", hint=hint) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a cgantool checkpoint", hint=hint)
    version = int(meta.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer cgantool (checkpoint format {version})",
            hint=f"upgrade cgantool (this is {__version__}, format {FORMAT_VERSION})",
        )
    while version < FORMAT_VERSION:
        if version not in MIGRATIONS:
            raise CheckpointError(f"{path} uses checkpoint format {version}, which this cgantool cannot read", hint=hint)
        meta = MIGRATIONS[version](meta)
        version += 1
    try:
        config = validate_config(json.loads(meta["config"]))
        return Checkpoint(
            path=path,
            config=config,
            preset=meta["preset"],
            step=int(meta["step"]),
            data_info=json.loads(meta["data_info"]),
            metrics=json.loads(meta.get("metrics", "{}")),
            state=json.loads(meta.get("state", "{}")),
            version=meta.get("cgantool_version", ""),
        )
    except (KeyError, ValueError, ConfigError) as e:
        raise CheckpointError(f"{path} has damaged cgantool metadata ({e})", hint=hint) from None
