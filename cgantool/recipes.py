"""Preset files and their per-resolution recipes: which official recipe a run trains, chosen once.

A preset TOML holds the values common to all its scales, then one ``[recipes.RES]`` table per resolution its
paper or official code reports::

    [recipes.128]
    name = "ImageNet"                                      # the dataset the official config was written for
    source = "PyTorch-StudioGAN src/configs/ImageNet/ContraGAN.yaml"
    [recipes.128.model]                                    # any config sections: they override the common values
    z_dim = 120

The training resolution is ``data.resolution`` when the user gives it (``--data DIR:RES``, ``--set``, ``--config``);
otherwise it comes from the data: CIFAR → 32; an image folder / captions file → the largest recipe resolution not
above the images' typical short side; the built-in shapes → the preset's own ``data.resolution``. A resolution
with no recipe trains the nearest one, said in one warning. Layers: preset → recipe → --config → --set → flags,
so anything the user names wins over the recipe. A recipe marked ``only_when_asked = true`` (XMC-GAN's 256 px,
which needed a TPU pod) is never picked from the data alone.
"""

from __future__ import annotations

import itertools
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cgantool.errors import ConfigError
from cgantool.registry import did_you_mean

PROBE_FILES = 64  # image headers read to find a folder's typical short side


# ----------------------------------------------------------------------------------------------
# Preset files


def presets_dir() -> Path:
    """Where the preset TOMLs are: inside the installed package, or the checkout's top-level presets/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "presets", here.parent / "presets"):
        if candidate.is_dir() and any(candidate.glob("*.toml")):
            return candidate
    raise ConfigError("no preset files found", hint="reinstall cgantool (pip install .): presets/ is missing")


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def preset_path(name: str) -> Path:
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset '{name}'",
                          hint=f"{did_you_mean(name, names)}valid presets: {', '.join(names)}")
    return presets_dir() / f"{name}.toml"


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing, unreadable, non-UTF-8 or malformed file is a ConfigError."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}", hint="check the path given to --config") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory", hint="--config takes a .toml file") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}",
                          hint="check the path given to --config") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line})",
                          hint="TOML files are UTF-8: re-save the file as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}", hint="fix the syntax of the file") from None


def preset_header(name: str) -> str:
    """The leading comment block of a preset file (its citation of where the numbers come from)."""
    lines = []
    for line in preset_path(name).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").rstrip())
    return "\n".join(lines)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# ----------------------------------------------------------------------------------------------
# Recipes


@dataclass(frozen=True)
class Recipe:
    resolution: int
    name: str  # the dataset the official config was written for, e.g. "ImageNet"
    source: str  # the official file the numbers come from
    overrides: dict[str, Any] = field(default_factory=dict)
    only_when_asked: bool = False

    @property
    def label(self) -> str:
        """What the run records as ``recipe`` and the first train line shows."""
        return f"{self.name} {self.resolution} px ({self.source})"


def preset_recipes(raw: dict[str, Any], where: str = "preset") -> list[Recipe]:
    """The ``[recipes.RES]`` tables of a preset's TOML, sorted by resolution (the key is removed from ``raw``)."""
    table = raw.pop("recipes", {})
    recipes = []
    for key, row in table.items():
        if not (str(key).isdigit() and isinstance(row, dict) and isinstance(row.get("name"), str)
                and isinstance(row.get("source"), str)):
            raise ConfigError(f"{where}: recipes.{key} is not a recipe",
                              hint="a [recipes.RES] table with name = '...' and source = '...'")
        row = dict(row)
        name, source, asked = row.pop("name"), row.pop("source"), bool(row.pop("only_when_asked", False))
        recipes.append(Recipe(int(key), name, source, row, asked))
    return sorted(recipes, key=lambda r: r.resolution)


def nearest(recipes: list[Recipe], resolution: int) -> Recipe:
    """The recipe at ``resolution``, else the closest one (ties: the smaller resolution)."""
    return min(recipes, key=lambda r: (abs(r.resolution - resolution), r.resolution))


def data_resolution(source: str) -> tuple[int | None, str]:
    """The resolution the data itself suggests, and why: CIFAR → 32; a folder / captions file → the typical (median)
    short side of a sample of its images (read from the headers only); shapes or unreadable → None."""
    from cgantool.data.sources import CIFAR_SOURCES

    if source in CIFAR_SOURCES:
        return 32, f"{source} is 32 px"
    if source in ("shapes", "shapes-multi"):
        return None, ""
    side = typical_short_side(source)
    return (side, f"its images' typical short side is {side} px") if side else (None, "")


def typical_short_side(source: str, limit: int = PROBE_FILES) -> int | None:
    """Median short side of up to ``limit`` images spread over the data (headers only; no pixel is decoded)."""
    from PIL import Image

    files = _probe_files(source, limit)
    if not files:
        return None
    sides = []
    for f in _evenly(files, limit):
        try:
            with Image.open(f) as img:
                sides.append(min(img.size))
        except Exception:  # unreadable files are reported by the data build, not here
            continue
    return sorted(sides)[len(sides) // 2] if sides else None


def _probe_files(source: str, limit: int = PROBE_FILES) -> list[Path]:
    import json

    if source.startswith("coco:"):
        return []  # COCO's annotations carry the sizes but are large to read twice; the preset's default applies
    path = Path(source).expanduser()
    if path.is_dir():
        return _sample_folder(path, limit)
    if path.is_file() and path.suffix == ".jsonl":
        files = []
        try:
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[:10_000]:
                if line.strip():
                    files.append(path.parent / json.loads(line)["file"])
        except (ValueError, KeyError, TypeError, OSError):
            pass  # a malformed file is reported by the data build
        return [f for f in files if f.is_file()]
    return []


def _evenly(items: list, n: int) -> list:
    """Up to ``n`` of ``items``, evenly spaced from the first."""
    step = max(1, len(items) // max(1, n))
    return items[::step][:n]


def _sample_folder(root: Path, limit: int) -> list[Path]:
    """Up to ``limit`` of the images training would use (``data.sources.image_files``' rule: with class sub-folders
    present, root files are not used), spread over the folder without listing all of it: an ImageNet tree costs
    one listing of its 1,000 class folders and one of each of ``limit`` of them, not a walk of 1.28M files."""
    from cgantool.data.sources import is_image_name as is_image

    def own_images(folder: Path) -> list[Path]:  # one folder's image files, sorted, no recursion
        try:
            with os.scandir(folder) as it:
                return sorted(Path(e.path) for e in it if is_image(e.name) and e.is_file())
        except OSError:
            return []

    try:
        with os.scandir(root) as it:
            subdirs = sorted(Path(e.path) for e in it if e.is_dir(follow_symlinks=False))  # as image_files
    except OSError:
        return []
    files: list[Path] = []
    picked = _evenly(subdirs, limit)
    per = -(-limit // max(1, len(picked)))
    for folder in picked:
        found = own_images(folder)
        if not found:  # a deeper tree (class/sub/img.jpg): the first few images found below
            found = list(itertools.islice((p for p in folder.rglob("*") if is_image(p.name) and p.is_file()), per))
        files += _evenly(found, per)
    return files[:limit] if files else _evenly(own_images(root), limit)


@dataclass
class Choice:
    resolution: int
    recipe: Recipe | None
    warning: str = ""  # one line, or ''


def choose(preset: str, recipes: list[Recipe], user_resolution: int | None, source: str, default: int,
           supported: tuple[int, ...]) -> Choice:
    """The resolution and recipe a run trains (the rules in this module's docstring)."""
    pickable = [r for r in recipes if not r.only_when_asked] or recipes
    if user_resolution is not None:
        if not recipes:
            return Choice(user_resolution, None)
        recipe = nearest(recipes, user_resolution)
        warning = "" if recipe.resolution == user_resolution else (
            f"{preset} has no recipe at {user_resolution} px: training with the {recipe.resolution} px "
            f"{recipe.name} recipe's settings at {user_resolution} px")
        return Choice(user_resolution, recipe, warning)
    found, why = data_resolution(source)
    if found is None:  # shapes, or nothing readable: the preset's own resolution
        return Choice(default, nearest(recipes, default) if recipes else None)
    candidates = [r.resolution for r in pickable] or list(supported)
    fitting = [r for r in candidates if r <= found]
    resolution = max(fitting) if fitting else min(candidates)
    warning = "" if fitting else (f"the data's images are smaller than {resolution} px ({why}): they are "
                                  f"upscaled; set data.resolution (or --data SOURCE:RES) to train smaller")
    return Choice(resolution, nearest(recipes, resolution) if recipes else None, warning)


def with_recipe(preset: str, base: dict[str, Any], user: dict[str, Any], supported: tuple[int, ...],
                notes: list[str] | None = None) -> dict[str, Any]:
    """The raw config of a new run: the preset ``base`` (its recipes removed), the chosen recipe's values, then the
    ``user`` layer (--config, --set, flags) on top; ``data.resolution`` and ``recipe`` set. Warnings → ``notes``."""
    base = dict(base)
    recipes = preset_recipes(base, f"preset {preset}")
    source = str(user.get("data", {}).get("source", base.get("data", {}).get("source", "shapes")))
    user_resolution = user.get("data", {}).get("resolution")
    default = int(base.get("data", {}).get("resolution", 32))
    choice = choose(preset, recipes, user_resolution if isinstance(user_resolution, int) else None, source,
                    default, supported)
    if choice.warning and notes is not None:
        notes.append(choice.warning)
    raw = deep_merge(base, choice.recipe.overrides) if choice.recipe else base
    raw = deep_merge(raw, user)
    raw = deep_merge(raw, {"data": {"resolution": user_resolution if user_resolution is not None
                                    else choice.resolution}})
    raw["recipe"] = choice.recipe.label if choice.recipe else ""
    return raw
