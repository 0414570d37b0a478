"""Issue 25, "nothing lost, nothing run": bounded decoding, no tracebacks from odd input files, and no silent
corruption (16-bit PNGs, null captions, scalar config sections, skipped images nobody was told about)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from cgantool.config import DataConfig, resolve_config
from cgantool.data import load_dataset
from cgantool.data.decode import _to_8bit
from cgantool.errors import ConfigError, DataError
from tests.conftest import TINY, invoke
from tests.test_cli import assert_usage_error

# A 1-step CPU run at 16 px: enough to see what `train` prints after loading the data.
ONE_STEP = ["--steps", "1", "--batch-size", "4", "--no-progress", "--device", "cpu",
            "--set", "data.resolution=16", *TINY]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    """A cache of its own per test: other test files count the entries of the shared one."""
    monkeypatch.setenv("CGANTOOL_CACHE", str(tmp_path_factory.mktemp("cache")))


def _png(path, color=(200, 30, 30), size=(20, 16), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def _warnings(text: str) -> list[str]:
    """The data's warnings (16 px has no recipe of its own: that one warning is tested in test_recipe_cli.py)."""
    return [line for line in text.splitlines() if line.startswith("warning:") and "has no recipe at" not in line]


# ----------------------------------------------------------------------------------------------
# 9: decoding is bounded


def test_oversized_image_skipped_from_its_header_and_named(tmp_path, monkeypatch, capsys):
    for i in range(3):
        _png(tmp_path / f"{i}.png")
    # 8000 x 8000 = 64,000,000 pixels > the default data.max_image_pixels (50,000,000); 62 kB on disk.
    Image.new("L", (8000, 8000)).save(tmp_path / "big.png")
    loaded = []
    real_load = PngImagePlugin.PngImageFile.load

    def spy(self):
        loaded.append(os.path.basename(self.filename))
        return real_load(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", spy)
    ds = load_dataset(DataConfig(source=str(tmp_path), resolution=8, max_bad_fraction=0.5))
    assert len(ds) == 3 and ds.num_bad == 1
    # big.png's size was read from its header only: never decoded
    assert "big.png" not in loaded and sorted(set(loaded)) == ["0.png", "1.png", "2.png"]
    (line,) = _warnings(capsys.readouterr().err)
    assert "skipped 1 of 4 images" in line and "big.png (8000x8000 pixels, over data.max_image_pixels" in line


def test_max_image_pixels_is_a_config_key_and_part_of_the_cache_key(tmp_path, capsys):
    _png(tmp_path / "small.png", size=(20, 16))  # 320 pixels
    _png(tmp_path / "large.png", size=(40, 30))  # 1200 pixels
    assert len(load_dataset(DataConfig(source=str(tmp_path), resolution=8))) == 2
    ds = load_dataset(DataConfig(source=str(tmp_path), resolution=8, max_image_pixels=1000, max_bad_fraction=0.5))
    assert len(ds) == 1 and ds.num_bad == 1  # not the cache entry built with the default limit
    assert "large.png (40x30 pixels" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"2 of 2 images could not be read \(first: large.png \(40x30 pixels"):
        load_dataset(DataConfig(source=str(tmp_path), resolution=8, max_image_pixels=100))


# ----------------------------------------------------------------------------------------------
# 12: silent corruption


def test_16bit_png_is_scaled_to_8_bits(tmp_path):
    # a 16 x 16 gradient over the whole 16-bit range: 0, 257, ... 65535 plus an offset in [-128, 127]
    rng = np.random.default_rng(0)
    v = np.clip(np.arange(256) * 257 + rng.integers(-128, 128, 256), 0, 65535).astype(np.uint16).reshape(16, 16)
    Image.fromarray(v).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    ds = load_dataset(DataConfig(source=str(tmp_path), resolution=16))  # same size: no resampling
    got = ds.images[0].to(torch.float64)  # [3, 16, 16]
    expected = torch.from_numpy(v.astype(np.float64) / 257).expand(3, 16, 16)
    # within 1 level of value/257 (clipping at 255, the old behaviour, is off by up to 0.5 * 255 / 1 for v > 255)
    torch.testing.assert_close(got, expected, rtol=0, atol=1.0)
    # and exactly round(value / 257): floor((v + 128) / 257)
    assert torch.equal(ds.images[0, 0], torch.from_numpy((v.astype(np.int64) + 128) // 257).to(torch.uint8))


def test_32bit_integer_mode_read_as_16_bit_range():
    img = Image.fromarray(np.array([[0, 257, 65535, 70000, -5, 384]], dtype=np.int32))
    assert img.mode == "I"
    # 65535 → 255; out of range clips to [0, 65535] first; 384 / 257 = 1.49 → 1
    assert np.asarray(_to_8bit(img)).tolist() == [[0, 1, 255, 255, 0, 1]]
    rgb = Image.new("RGB", (2, 2))
    assert _to_8bit(rgb) is rgb  # 8-bit modes untouched


def test_null_or_empty_caption_is_skipped_with_a_warning_not_trained_as_none(tmp_path, capsys):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    rows = [{"file": "a.png", "caption": "a red square"}, {"file": "b.png", "caption": None},
            {"file": "a.png", "caption": "  "}, {"file": "a.png", "caption": "red"}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_dataset(DataConfig(source=str(tmp_path / "c.jsonl"), resolution=8))
    assert ds.captions == [["a red square", "red"]] and len(ds) == 1  # b.png has no caption left
    (line,) = _warnings(capsys.readouterr().err)
    assert "skipped 2 of 4 captions" in line and "(line 2, line 3)" in line
    (tmp_path / "n.jsonl").write_text('{"file": "a.png", "caption": 5}\n')
    with pytest.raises(DataError, match=r"n.jsonl:1: the caption is 5, not text"):
        load_dataset(DataConfig(source=str(tmp_path / "n.jsonl"), resolution=8))


def test_null_coco_caption_is_skipped(tmp_path, capsys):
    _png(tmp_path / "1.jpg")
    doc = {"images": [{"id": 7, "file_name": "1.jpg"}],
           "annotations": [{"id": 1, "image_id": 7, "caption": " yellow "}, {"id": 2, "image_id": 7, "caption": None}]}
    (tmp_path / "cap.json").write_text(json.dumps(doc))
    ds = load_dataset(DataConfig(source=f"coco:{tmp_path / 'cap.json'}", resolution=8))
    assert ds.captions == [["yellow"]]
    assert "skipped 1 of 2 captions" in capsys.readouterr().err


@pytest.mark.parametrize("layer", [{"sets": ["model=0"]}, {"file": "train = 5\n"}, {"sets": ["loss.infomax=1"]}])
def test_scalar_section_is_an_error_naming_the_key(tmp_path, layer):
    path = None
    if "file" in layer:
        path = tmp_path / "c.toml"
        path.write_text(layer["file"])
    # train.steps comes later (the --steps flag): it must not quietly rebuild `train` without the preset's values
    pattern = r"^(model|train|loss\.infomax) must be a table, got (0|5|1) \((from --set|in --config)"
    with pytest.raises(ConfigError, match=pattern):
        resolve_config("sngan", path, layer.get("sets", ()), {"train.steps": 3})


def test_scalar_section_through_train_and_config_show(runner, tmp_path):
    (tmp_path / "c.toml").write_text("train = 5\n")
    result = invoke(runner, "train", "--config", tmp_path / "c.toml", "--out", tmp_path / "run", *ONE_STEP)
    assert_usage_error(result, "train must be a table, got 5", "[train]")
    assert not (tmp_path / "run").exists()
    assert_usage_error(invoke(runner, "config", "show", "--set", "model=0"), "model must be a table, got 0")


def test_skipped_bad_images_are_named_on_train(runner, tmp_path):
    for i in range(5):
        _png(tmp_path / "data" / f"{i}.png", (40 * i, 0, 0))
    (tmp_path / "data" / "broken.png").write_bytes(b"not a png")
    args = ["train", "--data", tmp_path / "data", "--out", tmp_path / "run", *ONE_STEP,
            "--set", "data.max_bad_fraction=0.5"]
    result = invoke(runner, *args)
    assert result.exit_code == 0, result.output
    (line,) = _warnings(result.output)
    assert "skipped 1 of 6 images" in line and "broken.png (not a readable image)" in line
    # the second run reads the cache: the user is told again
    again = invoke(runner, *args[:4], tmp_path / "run2", *args[5:])
    assert again.exit_code == 0, again.output
    assert _warnings(again.output) == [line]


# ----------------------------------------------------------------------------------------------
# 11: one error line and a hint, never a traceback


def test_non_utf8_config_is_one_error(runner, tmp_path):
    (tmp_path / "c.toml").write_bytes(b"[train]\n# caf\xe9\nsteps = 3\n")
    result = invoke(runner, "train", "--config", tmp_path / "c.toml", "--out", tmp_path / "run", *ONE_STEP)
    assert_usage_error(result, "is not UTF-8 text (byte 0xe9 on line 2)")


def test_config_that_is_a_directory_is_one_error(runner, tmp_path):
    result = invoke(runner, "train", "--config", tmp_path, "--out", tmp_path / "run", *ONE_STEP)
    assert_usage_error(result, "is a directory", "--config takes a .toml file")


def test_non_utf8_captions_jsonl_is_one_error(runner, tmp_path):
    _png(tmp_path / "a.png")
    lines = b'{"file": "a.png", "caption": "red"}\n{"file": "a.png", "caption": "caf\xe9"}\n'  # Latin-1 e-acute
    (tmp_path / "c.jsonl").write_bytes(lines)
    result = invoke(runner, "train", "--data", tmp_path / "c.jsonl", "--out", tmp_path / "run", *ONE_STEP)
    assert_usage_error(result, "c.jsonl:2 is not UTF-8 text (byte 0xe9)")


def test_non_utf8_folder_names_train_with_escaped_class_names(runner, tmp_path):
    root = tmp_path / "data"
    for name in (b"caf\xe9", b"dog"):
        os.makedirs(os.path.join(os.fsencode(root), name))
        for i in range(3):
            Image.new("RGB", (20, 16), (i * 50, 0, 0)).save(os.path.join(os.fsencode(root), name, b"%d.png" % i))
    Image.new("RGB", (20, 16)).save(os.path.join(os.fsencode(root), b"dog", b"\xff.png"))  # a non-UTF-8 file name
    ds = load_dataset(DataConfig(source=str(root), resolution=16))
    assert ds.class_names == ["caf\\xe9", "dog"] and ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    result = invoke(runner, "train", "--data", root, "--out", tmp_path / "run", *ONE_STEP)
    assert result.exit_code == 0, result.output
    result = invoke(runner, "data", "export", root, tmp_path / "export", "--resolution", "16")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["caf\\xe9", "dog"]


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_data_export_to_a_file_path_fails_before_any_work(runner, tmp_path, monkeypatch, where):
    import cgantool.data

    def no_work(cfg):
        raise AssertionError("the dataset was loaded before the output path was checked")

    monkeypatch.setattr(cgantool.data, "load_dataset", no_work)
    (tmp_path / "taken").write_text("x")
    out = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "sub" / "out"
    result = invoke(runner, "data", "export", "shapes:16", out, "-n", "4")
    assert_usage_error(result, "is a file")
    assert (tmp_path / "taken").read_text() == "x"
