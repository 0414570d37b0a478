"""safetensors checkpoints: atomic writes, self-describing metadata, never pickle.

A checkpoint holds tensors under prefixes (``G.``, ``D.``, ``G_ema.``, ``opt_G.``, ``opt_D.``, ``rng.``) and
string metadata: ``format``, ``format_version``, ``cgantool_version``, ``preset``, ``step``, and JSON for
``config`` (the resolved RunConfig), ``data_info`` (resolution, class names, ...), ``metrics`` and
``state`` (optimizer param groups, data position).
"""

from __future__ import annotations

import json
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
from cgantool.files import atomic_write

FORMAT = "cgantool"
FORMAT_VERSION = 1
# The safetensors header (metadata + tensor table) of a real checkpoint is tens of KB; a builtin text vocabulary
# adds a few hundred. Anything past this bound is refused before it is parsed (no hang, no memory blow-up).
MAX_HEADER_BYTES = 8 * 2**20
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

    def shapes(self, prefix: str) -> dict[str, tuple[int, ...]]:
        """Shapes of the tensors under ``prefix.`` read from the file's header (no tensor is loaded)."""
        with safe_open(str(self.path), framework="pt") as f:
            return {k[len(prefix) + 1 :]: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith(prefix + ".")}


_DAMAGED_HINT = "the file was damaged or edited; use another checkpoint (e.g. RUN/checkpoints/step_*.safetensors)"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_module_tensors(ckpt: Checkpoint, prefix: str, module: torch.nn.Module) -> None:
    """Refuse (one CheckpointError naming the first differences) unless the file's tensors under ``prefix`` have
    exactly the names and shapes of ``module.state_dict()``. Reads only the header, so a ``module`` built on the
    ``meta`` device checks a checkpoint before anything real is allocated."""
    found = ckpt.shapes(prefix)
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if not found:
        raise CheckpointError(f"{ckpt.path} has no '{prefix}' weights", hint=_DAMAGED_HINT)
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [k for k in expected if k in found and found[k] != expected[k]]
    if not (missing or unexpected or wrong):
        return
    def names(keys: list[str]) -> str:
        return ", ".join(f"{prefix}.{k}" for k in keys[:3]) + (" ..." if len(keys) > 3 else "")

    parts = []
    if missing:
        parts.append(f"missing {names(missing)}")
    if unexpected:
        parts.append(f"unexpected {names(unexpected)}")
    for k in wrong[:3]:
        parts.append(f"{prefix}.{k} is {list(found[k])}, the stored config builds {list(expected[k])}")
    raise CheckpointError(f"{ckpt.path}: the '{prefix}' tensors do not match the model its metadata describes "
                          f"({'; '.join(parts)})", hint=_DAMAGED_HINT)


def check_data_info(data_info: Any, config: RunConfig) -> str | None:
    """What is wrong with a checkpoint's ``data_info`` for its config (None when nothing is): the fields that
    rebuilding G and naming classes/captions read."""

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not isinstance(data_info, dict):
        return "data_info is not a JSON object"
    res = data_info.get("resolution")
    if not is_int(res) or not 8 <= res <= 1024:
        return f"data_info.resolution is {_short(res)}, not an image size in pixels (8-1024)"
    names = data_info.get("class_names", [])
    if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
        return "data_info.class_names is not a list of strings"
    mode = config.model.conditioning
    if mode == "class":
        num = data_info.get("num_classes")
        if not is_int(num) or num < 2:
            return f"data_info.num_classes is {_short(num)} for a class-conditional model (needs an integer >= 2)"
        if len(names) != num:
            return f"data_info names {len(names)} classes but data_info.num_classes is {num}"
    if mode == "text":
        text = data_info.get("text")
        if not isinstance(text, dict) or not is_int(text.get("dim")) or text["dim"] < 1:
            return "data_info.text (the text encoder: name, dim, vocabulary) is missing or malformed"
    return None


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
    not_safetensors = CheckpointError(f"{path} is not a cgantool checkpoint (not a safetensors file)", hint=hint)
    try:
        with open(path, "rb") as f:
            start = f.read(9)  # safetensors: u64 header length, then the JSON header
        size = path.stat().st_size
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}", hint=hint) from None
    header = int.from_bytes(start[:8], "little")
    if len(start) < 9 or start[8:] != b"{" or header > size - 8:
        raise not_safetensors
    if header > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{path} has {header / 2**20:.1f} MB of metadata; a cgantool checkpoint's is far below "
            f"{MAX_HEADER_BYTES // 2**20} MB, so it is refused unread",
            hint=hint,
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:
        raise not_safetensors from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a cgantool checkpoint", hint=hint)
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        raise CheckpointError(f"{path} has a damaged format_version ({_short(meta.get('format_version'))})",
                              hint=_DAMAGED_HINT) from None
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
        config = validate_config(json.loads(meta["config"]), stored=True)
        ckpt = Checkpoint(
            path=path,
            config=config,
            preset=meta["preset"],
            step=int(meta["step"]),
            data_info=json.loads(meta["data_info"]),
            metrics=json.loads(meta.get("metrics", "{}")),
            state=json.loads(meta.get("state", "{}")),
            version=meta.get("cgantool_version", ""),
        )
    except (KeyError, ValueError, TypeError, RecursionError, ConfigError) as e:  # RecursionError: [[[[...]]]]
        raise CheckpointError(f"{path} has damaged cgantool metadata ({_short(str(e), 200)})", hint=hint) from None
    problem = check_data_info(ckpt.data_info, config)
    if problem is None and ckpt.step < 0:
        problem = f"step is {ckpt.step}"
    if problem is None and not (isinstance(ckpt.metrics, dict) and isinstance(ckpt.state, dict)):
        problem = "metrics or state is not a JSON object"
    if problem is not None:
        raise CheckpointError(f"{path} has damaged cgantool metadata: {problem}", hint=_DAMAGED_HINT)
    return ckpt


def nonfinite_tensors(module: torch.nn.Module) -> list[str]:
    """Names of ``module``'s floating-point parameters and buffers that hold NaN or ±inf."""
    return [k for k, v in module.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]


def restore_training_state(ckpt: Checkpoint, gan: Any, G_ema: torch.nn.Module | None, opt_G: torch.optim.Optimizer,
                           opt_D: torch.optim.Optimizer, noise: torch.Generator) -> int:
    """Load what ``--resume`` continues from — G, D, G_ema, both optimizers, the noise generator — and return the
    data position. Every part is checked against what this run built before anything is loaded, so a damaged or
    edited file is one CheckpointError naming the broken part, never a traceback halfway through."""

    def broken(what: str) -> CheckpointError:
        return CheckpointError(f"{ckpt.path} cannot be resumed: {what}",
                               hint="the file was damaged or edited; copy an earlier RUN/checkpoints/step_*.safetensors "
                               "over RUN/checkpoints/last.safetensors, or start a new run")

    modules = {"G": gan.G, "D": gan.D, **({"G_ema": G_ema} if G_ema is not None else {})}
    for prefix, module in modules.items():
        check_module_tensors(ckpt, prefix, module)
    opt_states = {name: _checked_optimizer_state(ckpt, name, opt, broken)
                  for name, opt in (("opt_G", opt_G), ("opt_D", opt_D))}
    rng = ckpt.tensors("rng")
    current = noise.get_state()
    state = rng.get("noise")
    if state is None:
        raise broken("the noise generator's state (rng.noise) is missing")
    if state.dtype != current.dtype or state.shape != current.shape:
        raise broken(f"rng.noise is {state.dtype} {list(state.shape)}, but a {noise.device.type} generator's state is "
                     f"{current.dtype} {list(current.shape)} (was the run trained on another device type?)")
    position = ckpt.state.get("data_position")
    if not isinstance(position, int) or isinstance(position, bool) or position < 0:
        raise broken(f"state.data_position is {_short(position)}, not a count of images drawn")
    best_fid = ckpt.state.get("best_fid", 0.0)
    if not isinstance(best_fid, (int, float)) or isinstance(best_fid, bool):
        raise broken(f"state.best_fid is {_short(best_fid)}, not a number")
    for prefix, module in modules.items():
        module.load_state_dict(ckpt.tensors(prefix))
    opt_G.load_state_dict(opt_states["opt_G"])
    opt_D.load_state_dict(opt_states["opt_D"])
    noise.set_state(state)
    return position


def _checked_optimizer_state(ckpt: Checkpoint, name: str, opt: torch.optim.Optimizer, broken) -> dict[str, Any]:
    """The optimizer ``name``'s state dict from the file, checked against ``opt``: same groups and parameter counts,
    hyper-parameters of the same kind, one entry per parameter with the same keys and its parameter's shape."""
    groups = ckpt.state.get(f"{name}.param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups):
        raise broken(f"{name}'s parameter groups (state['{name}.param_groups']) are missing or malformed")
    current = opt.param_groups
    sizes = [len(g["params"]) for g in groups]
    expected = [len(g["params"]) for g in current]
    if sizes != expected:
        raise broken(f"{name} holds parameter groups of sizes {sizes}, this model's are {expected}")
    for saved, now in zip(groups, current):
        for key, value in now.items():
            if key == "params" or key not in saved or isinstance(value, bool) or not isinstance(value, (int, float, tuple)):
                continue  # only numbers the step computes with: lr, betas, eps, weight_decay
            got = saved.get(key)
            number = isinstance(value, (int, float)) and isinstance(got, (int, float)) and not isinstance(got, bool)
            pair = isinstance(value, tuple) and isinstance(got, list) and len(got) == len(value) \
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in got)
            if not (number or pair):
                raise broken(f"{name} hyper-parameter '{key}' is {_short(got)}")
    params = {i: p for saved, now in zip(groups, current) for i, p in zip(saved["params"], now["params"])}
    try:
        state = unflatten_optimizer(ckpt.tensors(name), groups)
    except ValueError:
        raise broken(f"{name}'s tensors are not named {name}.state.<index>.<key>") from None
    if not state["state"] and ckpt.step > 0:
        raise broken(f"{name}'s state (its {name}.state.* tensors) is missing")
    keys = set().union(*(per.keys() for per in state["state"].values())) if state["state"] else set()
    for idx, per in state["state"].items():
        if idx not in params:
            raise broken(f"{name} has state for parameter {idx}, which its parameter groups do not list")
        if per.keys() != keys:
            raise broken(f"{name}.state.{idx} lacks {', '.join(sorted(keys - per.keys()))}")
        for key, value in per.items():
            shape = () if key == "step" else tuple(params[idx].shape)
            if tuple(value.shape) != shape and not (key == "step" and value.numel() == 1):
                raise broken(f"{name}.state.{idx}.{key} is {list(value.shape)}, its parameter needs {list(shape)}")
    return state
