"""Data sources: image folders, captions JSONL/COCO, the uint8 cache, bad images, offline CIFAR, batches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cgantool.config import DataConfig
from cgantool.data import cache_dir, load_dataset, parse_source
from cgantool.data.batches import RealBatches, to_float, to_uint8
from cgantool.errors import DataError


def _png(path, color, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_parse_source():
    assert parse_source("shapes:16") == ("shapes", 16)
    assert parse_source("shapes") == ("shapes", None)
    assert parse_source("cifar10") == ("cifar10", None)
    assert parse_source("/data/x:y") == ("/data/x:y", None)


def test_class_folder_decodes_once_to_uint8(tmp_path):
    for i in range(3):
        _png(tmp_path / "cats" / f"{i}.png", (255, 0, 0))
        _png(tmp_path / "dogs" / f"{i}.jpg", (0, 0, 255))
    ds = load_dataset(DataConfig(source=str(tmp_path), resolution=8))
    assert ds.images.dtype == torch.uint8 and tuple(ds.images.shape) == (6, 3, 8, 8)
    assert ds.class_names == ["cats", "dogs"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    # a red 40x30 image, centre-cropped and resized, is pure red
    assert ds.images[0, :, 4, 4].tolist() == [255, 0, 0]
    # JPEG is lossy: blue within 2 levels
    torch.testing.assert_close(ds.images[3, :, 4, 4].long(), torch.tensor([0, 0, 255]), rtol=0, atol=2)
    entries = list((cache_dir() / "data").glob("folder-8-*"))
    assert len(entries) == 1 and (entries[0] / "images.npy").exists()
    # second load: from the cache (same entry, identical pixels)
    again = load_dataset(DataConfig(source=str(tmp_path), resolution=8))
    assert torch.equal(again.images, ds.images)
    assert len(list((cache_dir() / "data").glob("folder-8-*"))) == 1
    # a changed folder gets a new cache entry
    _png(tmp_path / "dogs" / "new.png", (0, 255, 0))
    assert len(load_dataset(DataConfig(source=str(tmp_path), resolution=8))) == 7


def test_flat_folder_is_unconditional(tmp_path):
    for i in range(2):
        _png(tmp_path / f"{i}.png", (10, 20, 30))
    ds = load_dataset(DataConfig(source=str(tmp_path), resolution=8))
    assert ds.labels is None and ds.class_names == [] and ds.info()["num_classes"] == 0


def test_bad_images_counted_and_threshold(tmp_path):
    for i in range(99):
        _png(tmp_path / f"{i:03d}.png", (1, 2, 3))
    (tmp_path / "zzz.png").write_bytes(b"not an image")
    ds = load_dataset(DataConfig(source=str(tmp_path), resolution=8, max_bad_fraction=0.02))
    assert len(ds) == 99 and ds.num_bad == 1
    with pytest.raises(DataError, match="1 of 100 images could not be read"):
        load_dataset(DataConfig(source=str(tmp_path), resolution=9, max_bad_fraction=0.0))


def test_missing_and_empty_data(tmp_path):
    with pytest.raises(DataError, match="data not found"):
        load_dataset(DataConfig(source=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_dataset(DataConfig(source=str(tmp_path / "empty")))


def test_captions_jsonl_groups_captions(tmp_path):
    _png(tmp_path / "a.png", (255, 0, 0))
    _png(tmp_path / "b.png", (0, 255, 0))
    rows = [{"file": "a.png", "caption": "a red thing"}, {"file": "b.png", "caption": "green on the left"},
            {"file": "a.png", "caption": "red again"}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_dataset(DataConfig(source=str(tmp_path / "c.jsonl"), resolution=8))
    assert ds.captions == [["a red thing", "red again"], ["green on the left"]]
    assert ds.hflip_safe is False  # a caption names a side
    (tmp_path / "bad.jsonl").write_text('{"file": "a.png"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        load_dataset(DataConfig(source=str(tmp_path / "bad.jsonl"), resolution=8))


def test_coco_captions(tmp_path):
    _png(tmp_path / "img" / "1.jpg", (255, 255, 0))
    doc = {"images": [{"id": 7, "file_name": "1.jpg"}],
           "annotations": [{"image_id": 7, "caption": " a yellow square "}, {"image_id": 7, "caption": "yellow"}]}
    (tmp_path / "cap.json").write_text(json.dumps(doc))
    ds = load_dataset(DataConfig(source=f"coco:{tmp_path / 'cap.json'}", resolution=8, image_root=str(tmp_path / "img")))
    assert ds.captions == [["a yellow square", "yellow"]] and ds.hflip_safe


def test_cifar_offline_error_names_url_and_folder(tmp_path, monkeypatch):
    import torchvision

    class Offline:
        def __init__(self, root, train=True, download=False):
            raise RuntimeError("Dataset not found") if not download else OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(source="cifar10", root=str(tmp_path)))
    assert "cifar-10-python.tar.gz" in e.value.hint and str(tmp_path) in e.value.hint


def test_cifar_from_local_copy(tmp_path, monkeypatch):
    import torchvision

    class Local:
        def __init__(self, root, train=True, download=False):
            self.data = np.full((4, 32, 32, 3), 200, np.uint8)
            self.targets = [0, 1, 2, 1]
            self.classes = ["a", "b", "c"]

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Local)
    ds = load_dataset(DataConfig(source="cifar10", root=str(tmp_path), resolution=16))
    assert tuple(ds.images.shape) == (4, 3, 16, 16) and int(ds.images.min()) == 200
    assert ds.labels.tolist() == [0, 1, 2, 1] and ds.class_names == ["a", "b", "c"]


def test_batches_resume_where_they_stopped(tmp_path):
    for i in range(10):
        _png(tmp_path / f"{i}.png", (i * 20, 0, 0))
    ds = load_dataset(DataConfig(source=str(tmp_path), resolution=8))
    full = RealBatches(ds, batch_size=4, seed=1, device=torch.device("cpu"))
    seen = [full.next()[2] for _ in range(6)]  # 24 images: crosses two epoch boundaries
    first = RealBatches(ds, batch_size=4, seed=1, device=torch.device("cpu"))
    part = [first.next()[2] for _ in range(3)]
    resumed = RealBatches(ds, batch_size=4, seed=1, device=torch.device("cpu"), position=first.position)
    part += [resumed.next()[2] for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(seen, part))
    # each epoch visits every image exactly once
    flat = torch.cat(seen)
    assert sorted(flat[:10].tolist()) == list(range(10)) and sorted(flat[10:20].tolist()) == list(range(10))


def test_uint8_float_round_trip():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    f = to_float(x)
    assert float(f.min()) == -1.0 and float(f.max()) == 1.0
    assert torch.equal(to_uint8(f), x)


def test_the_cifar_test_split_is_a_source_of_its_own(tmp_path, monkeypatch):
    import torchvision

    class Local:  # train: 4 images of 200; test: 2 images of 50
        def __init__(self, root, train=True, download=False):
            n, value = (4, 200) if train else (2, 50)
            self.data = np.full((n, 32, 32, 3), value, np.uint8)
            self.targets = list(range(n))
            self.classes = [str(i) for i in range(4)]

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Local)
    assert parse_source("cifar10-test:16") == ("cifar10-test", 16)
    train = load_dataset(DataConfig(source="cifar10", root=str(tmp_path), resolution=32))
    test = load_dataset(DataConfig(source="cifar10-test", root=str(tmp_path), resolution=32))
    assert len(train) == 4 and int(train.images.max()) == 200
    assert len(test) == 2 and int(test.images.max()) == 50 and test.labels.tolist() == [0, 1]
