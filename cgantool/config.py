"""The run configuration: one strict pydantic tree, layered preset → file → --set → flags, validated once.

Only what changes the result of training lives here. Runtime options (device, output path, workers,
progress) are arguments of the commands, never config keys.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from cgantool.errors import ConfigError
from cgantool.nets import arch_names, supported_resolutions
from cgantool.recipes import deep_merge, preset_header, preset_names, preset_path, presets_dir, read_toml  # noqa: F401
from cgantool.registry import did_you_mean as _did_you_mean  # the one helper; importable from here too
from cgantool.registry import registered_name, unknown_name
from cgantool.terms import check_terms, follow_terms, loss_config


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    source: str = Field("shapes", description="'shapes', an image folder, 'cifar10', 'cifar100', a captions JSONL or 'coco:ANNOTATIONS.json'.")
    resolution: int = Field(32, ge=8, le=1024, description="Square image size in pixels.")
    num_images: int = Field(10000, ge=1, description="Images generated for the built-in 'shapes' dataset.")
    shapes_seed: int = Field(0, description="Seed of the built-in 'shapes' dataset.")
    multi_object: bool = Field(False, description="'shapes' with 1-3 objects per image (for text-to-image).")
    root: str = Field("", description="Where cifar10/cifar100 live (or are downloaded to); '' = cgantool's cache dir.")
    image_root: str = Field("", description="Image directory for 'coco:' captions; '' = beside the JSON file.")
    max_bad_fraction: float = Field(0.01, ge=0.0, le=1.0, description="Stop when more than this fraction of images cannot be "
                                    "read (or are too large); fewer are skipped, with a warning naming them.")
    crop: bool = Field(True, description="Resize the short side and centre-crop (true); false = resize to a square "
                       "without cropping, changing the aspect ratio (XMC-GAN's official pipeline).")
    max_image_pixels: int = Field(50_000_000, ge=1, description="Images whose header claims more pixels (width x height) "
                                  "are skipped without being decoded; 50 MP fits a 45 MP camera's full frame.")


class ModelConfig(_Section):
    arch: registered_name("architecture", arch_names) = Field("sngan", description="Backbone of G and D.")
    conditioning: Literal["auto", "none", "class", "text"] = Field(
        "auto", description="'auto' = class-conditional when the data has class labels, else unconditional; "
        "'text' = text-to-image from captions (model.arch = 'xmcgan')."
    )
    z_dim: int = Field(128, ge=1)
    g_channels: int = Field(0, ge=0, description="Generator width; 0 = the paper width for the resolution.")
    d_channels: int = Field(0, ge=0, description="Discriminator width; 0 = the paper width for the resolution.")
    g_self_attention: bool = Field(False, description="Self-attention in G at the middle resolution (sngan arch).")
    upsample: Literal["bilinear", "nearest"] = Field("bilinear", description="sngan G upsampling (Mimicry: bilinear).")
    shared_dim: int = Field(128, ge=1, description="biggan: size of the class embedding shared by G's conditional "
                            "BNs (StudioGAN g_shared_dim).")
    attention_resolution: int = Field(0, ge=0, description="biggan: self-attention after the G and D blocks whose "
                                      "output is this many px; 0 = half the image size (StudioGAN's placement).")


LossConfig = loss_config()  # loss.adversarial + a section per term, as registered at import (cgantool.terms)


class TextConfig(_Section):
    encoder: str = Field("builtin", description="'builtin' (offline, trained on the captions), 'minilm' "
                         "(extra cgantool[minilm]) or 'hf:<name or local path>' (extra cgantool[hf]).")
    max_words: int = Field(17, ge=2, le=512, description="Tokens per caption (words, or wordpieces with [CLS]/[SEP]).")
    dim: int = Field(256, ge=2, description="Feature size of the builtin encoder (others: their own).")
    pretrain_steps: int = Field(600, ge=0, description="Pretraining steps of the builtin encoder (cached).")
    pretrain_batch_size: int = Field(64, ge=2)
    unknown_words: Literal["error", "ignore", "unk"] = Field(
        "error", description="Prompt words outside the builtin vocabulary: an error, dropped, or <unk>."
    )

    @field_validator("encoder")
    @classmethod
    def _encoder(cls, value: str) -> str:
        from cgantool.text.encoders import check_spec, encoder_names

        try:
            return check_spec(value)
        except ValueError:
            raise unknown_name("text encoder", value, encoder_names()) from None


class OptimConfig(_Section):
    lr_g: float = Field(2e-4, gt=0.0)
    lr_d: float = Field(2e-4, gt=0.0)
    beta1: float = Field(0.0, ge=0.0, lt=1.0)
    beta2: float = Field(0.9, ge=0.0, lt=1.0)
    eps: float = Field(1e-8, gt=0.0)
    lr_decay: Literal["none", "linear"] = Field("none", description="'linear' decays both lrs to 0 at train.steps.")


class TrainConfig(_Section):
    steps: int = Field(100000, ge=1, description="Total number of G steps of the run.")
    batch_size: int = Field(64, ge=1, description="Global batch: with N processes (torchrun) each trains on batch_size / N.")
    d_steps_per_g_step: int = Field(5, ge=1)
    seed: int = 0
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0, description="EMA of G; 0 = off.")
    ema_start_step: int = Field(0, ge=0, description="Before this G step the EMA copies G.")
    hflip: bool = Field(True, description="Random horizontal flips of real images (skipped when captions name left/right).")
    diffaug: str = Field("", description="DiffAugment policy on real and fake, e.g. 'color,translation,cutout'; '' = off.")
    amp: Literal["bf16", "none"] = Field("bf16", description="Mixed precision on CUDA: bf16 autocast, fp32 weights "
                                         "and losses.")
    cpu_amp: Literal["none", "bf16"] = Field("none", description="The same bf16 autocast on CPU: 1.4-4.5x faster "
                                             "steps measured on a Xeon with AMX; CPUs without native bf16 emulate "
                                             "it; off by default.")
    log_every: int = Field(50, ge=1)
    sample_every: int = Field(1000, ge=1)
    checkpoint_every: int = Field(1000, ge=1)
    keep_last: int = Field(3, ge=1, description="step_*.safetensors files kept.")
    tensorboard: bool = Field(False, description="Also log scalars and sample grids to RUN/tensorboard (needs tensorboard).")
    gather: bool = Field(True, description="Multi-process runs: losses see the global batch (all-gathered D outputs, "
                         "local slice keeps its gradient); false = per-rank losses.")
    sync_bn: bool = Field(False, description="Multi-process runs: BatchNorm statistics over the global batch.")
    reuse_fake: bool = Field(False, description="The G step reuses the last D step's fakes (one G forward fewer per "
                             "step; changes the recipe: G is trained on fakes D has just been updated against).")

    def amp_on(self, device_type: str) -> str:
        """The autocast this run uses on a device type: train.amp on CUDA, train.cpu_amp on CPU, else none."""
        return {"cuda": self.amp, "cpu": self.cpu_amp}.get(device_type, "none")


class EvalConfig(_Section):
    every: int = Field(0, ge=0, description="Evaluate every N G steps during training; 0 = off.")
    num_samples: int = Field(5000, ge=2)
    metrics: list[str] = Field(default_factory=lambda: ["fid"], description="Registered metric names "
                               "(cgantool.eval.registry), e.g. ['fid', 'kid'].")
    feature_extractor: str = Field("", description="'' = Inception (clean-fid); or 'module:function'.")

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str], info: ValidationInfo) -> list[str]:
        from cgantool.eval.registry import METRICS

        if (info.context or {}).get("stored"):  # a checkpoint's record: a plugin metric need not be loaded to sample
            return value
        for name in value:
            if name not in METRICS:
                raise unknown_name(f"metric '{name}'", name, METRICS.names())
        return value


class RunConfig(_Section):
    preset: str = "sngan"
    recipe: str = Field("", description="The preset's official recipe this run started from (cgantool.recipes).")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    text: TextConfig = TextConfig()

    @model_validator(mode="after")
    def _compatible(self) -> RunConfig:
        """Combinations that can never train (data-dependent ones: when the model is built); terms check their own."""
        text, xmc_arch = self.model.conditioning == "text", self.model.arch == "xmcgan"
        if text != xmc_arch:
            raise ConfigError(
                f"model.arch = '{self.model.arch}' with model.conditioning = '{self.model.conditioning}': text "
                "conditioning and the xmcgan architecture go together",
                hint="use --preset xmcgan for text-to-image, or another arch/conditioning pair",
            )
        if self.data.resolution not in (supported := supported_resolutions(self.model.arch)):  # before any decoding
            raise ConfigError(f"the {self.model.arch} backbone has no {self.data.resolution} px layout",
                              hint=f"set data.resolution to one of {', '.join(map(str, supported))}")
        check_terms(self)
        return self


follow_terms(RunConfig)  # RunConfig.loss is rebuilt when a term is registered or unregistered later


# ----------------------------------------------------------------------------------------------
# Layering


def parse_value(text: str) -> Any:
    """Parse the value of a --set as a TOML value; bare words are strings (``data.source=shapes``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(assignment: str) -> dict[str, Any]:
    """``'loss.infomax.weight=0.2'`` → ``{'loss': {'infomax': {'weight': 0.2}}}``."""
    key, sep, value = assignment.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects section.key=value, got '{assignment}'", hint="e.g. --set train.batch_size=32")
    return _nest(key, parse_value(value.strip()))


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_known_keys(ann, dotted + "."))
    return keys


def validate_config(raw: dict[str, Any], stored: bool = False) -> RunConfig:
    """Validate a merged config dict once; the first error names its dotted path (and a close valid key).
    ``stored``: the record of a run (a checkpoint's config), whose plugin metrics need not be registered here."""
    try:
        return RunConfig.model_validate(raw, context={"stored": stored})
    except ValidationError as e:
        err = e.errors()[0]
        path = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            hint = _did_you_mean(path, _known_keys(RunConfig)) + "see `cgantool config schema` for every key"
            raise ConfigError(f"unknown config key '{path}'", hint=hint.strip()) from None
        value = err.get("input")
        shown = json.dumps(value) if isinstance(value, (str, int, float, bool, list)) else type(value).__name__
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        unknown = err["type"] == "unknown_name"  # a name no registry holds: its hint says the closest
        hint = err["ctx"]["hint"] if unknown else "see `cgantool config schema` for allowed values"
        raise ConfigError(f"invalid value for '{path}': {shown}: {err['msg']}{more}", hint=hint) from None


def check_tables(layer: dict[str, Any], where: str, model: type[BaseModel] = RunConfig, prefix: str = "") -> None:
    """Every section of the schema (``train``, ``loss.infomax``...) that ``layer`` sets must be a table.

    Checked per layer, before merging: a later layer's ``train.steps`` would otherwise silently replace a
    scalar ``train = 5`` by ``{steps = ...}``, dropping every preset value of the section.
    """
    for key, value in layer.items():
        field = model.model_fields.get(key)
        if field is None:
            continue  # unknown keys are reported by validate_config
        ann, dotted = field.annotation, f"{prefix}{key}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if not isinstance(value, dict):
                shown = json.dumps(value) if isinstance(value, (str, int, float, bool, list)) else type(value).__name__
                raise ConfigError(
                    f"{dotted} must be a table, got {shown} ({where})",
                    hint=f"set keys inside it: a [{dotted}] section in TOML, or --set {dotted}.KEY=VALUE",
                )
            check_tables(value, where, ann, dotted + ".")


def resolve_config(
    preset: str,
    config_file: str | Path | None = None,
    sets: list[str] | tuple[str, ...] = (),
    flags: dict[str, Any] | None = None,
    notes: list[str] | None = None,
) -> RunConfig:
    """Layer preset TOML → its recipe for the resolution → --config file → --set key=value → explicit flags
    (dotted keys), then validate. The recipe's choice (cgantool.recipes) may add one warning line to ``notes``."""
    from cgantool.recipes import with_recipe

    base = read_toml(preset_path(preset))
    base["preset"] = preset
    user = layer_config({}, config_file, sets, flags)
    arch = user.get("model", {}).get("arch", base.get("model", {}).get("arch", "sngan"))
    supported = supported_resolutions(arch) if arch in arch_names() else ()
    return validate_config(with_recipe(preset, base, user, supported, notes))


def layer_config(
    base: dict[str, Any],
    config_file: str | Path | None = None,
    sets: list[str] | tuple[str, ...] = (),
    flags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``base`` (a preset's TOML, or a run's stored config) with --config, --set and flags layered on, unvalidated."""
    raw = dict(base)
    check_tables(raw, "in the base config")
    if config_file:
        layer = read_toml(Path(config_file))
        check_tables(layer, f"in --config {config_file}")
        raw = deep_merge(raw, layer)
    for assignment in sets:
        layer = parse_set(assignment)
        check_tables(layer, f"from --set {assignment}")
        raw = deep_merge(raw, layer)
    for dotted, value in (flags or {}).items():
        if value is not None:
            raw = deep_merge(raw, _nest(dotted, value))
    return raw


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    parts = dotted.split(".")
    node: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        node = {part: node}
    return node


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def diff_configs(a: RunConfig, b: RunConfig, ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    fa, fb = flatten(config_to_dict(a)), flatten(config_to_dict(b))
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k) and k not in ignore)


# ----------------------------------------------------------------------------------------------
# TOML output (tomllib only reads)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def to_toml(d: dict[str, Any], _prefix: str = "") -> str:
    """Write a nested dict of scalars / lists of scalars as TOML (sections for nested dicts)."""
    scalars = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    parts = ["\n".join(scalars)] if scalars else []
    for key, value in d.items():
        if isinstance(value, dict):
            name = f"{_prefix}{key}"
            inner_scalars = {k: v for k, v in value.items() if not isinstance(v, dict)}
            body = to_toml(inner_scalars) if inner_scalars else ""
            parts.append(f"[{name}]\n{body}".rstrip())
            nested = {k: v for k, v in value.items() if isinstance(v, dict)}
            if nested:
                parts.append(to_toml(nested, f"{name}."))
    return "\n\n".join(p for p in parts if p) + ("\n" if not _prefix else "")
