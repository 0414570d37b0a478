"""Issue 28: the cache build streams into the entry's images.npy (flat memory, worker processes), an interrupted
build is never trusted, the images are those the old list+stack build made, and prefetched batches are the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cgantool.config import DataConfig
from cgantool.data import cache_dir, load_dataset
from cgantool.data.batches import RealBatches
from cgantool.data.decode import DECODE_PIXEL_BUDGET, _decode_one, _PixelBudget
from cgantool.data.progress import BuildProgress
from cgantool.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CGANTOOL_CACHE", str(tmp_path_factory.mktemp("cache")))


def _folder(root: Path, n: int, classes: int = 2, seed: int = 0) -> list[Path]:
    """n small random RGB images (PNG and JPEG, odd sizes) in ``classes`` class folders."""
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        h, w = int(rng.integers(9, 40)), int(rng.integers(9, 40))
        path = root / f"c{i % classes}" / f"{i:04d}.{'png' if i % 3 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        files.append(path)
    return files


def _python(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def _expected(files: list[Path], resolution: int) -> np.ndarray:
    """What the old build stored: _decode_one of every good file, stacked in file order."""
    budget = _PixelBudget(DECODE_PIXEL_BUDGET)
    decoded = [_decode_one(f, resolution, 50_000_000, budget) for f in sorted(files)]
    return np.stack([d for d in decoded if not isinstance(d, str)])


@pytest.mark.parametrize("workers", ["0", "2"])
def test_cache_equals_the_old_build_with_bad_files_named(tmp_path, monkeypatch, capsys, workers):
    monkeypatch.setenv("CGANTOOL_DECODE_WORKERS", workers)  # in this process, and through 2 worker processes
    files = _folder(tmp_path / "data", 70)
    for bad in (tmp_path / "data" / "c0" / "0000.jpg", tmp_path / "data" / "c1" / "0035.png"):
        bad.write_bytes(b"not an image")
    ds = load_dataset(DataConfig(source=str(tmp_path / "data"), resolution=12, max_bad_fraction=0.1))
    good = sorted(f for f in files if f.name not in ("0000.jpg", "0035.png"))
    assert np.array_equal(ds.images.numpy(), _expected(good, 12)) and ds.num_bad == 2 and ds.mapped
    assert ds.labels.tolist() == [int(f.parent.name[1]) for f in good]
    err = capsys.readouterr().err
    assert "skipped 2 of 70 images" in err and "c0/0000.jpg (not a readable image)" in err
    assert "c1/0035.png (not a readable image)" in err
    entry = next((cache_dir() / "data").glob("folder-12-*"))
    assert not list(entry.parent.glob("*.tmp-*"))  # the build's temporary entry is gone
    with pytest.raises(DataError, match="2 of 70 images could not be read"):  # (a new entry: another resolution)
        load_dataset(DataConfig(source=str(tmp_path / "data"), resolution=10, max_bad_fraction=0.01))
    assert not list(entry.parent.glob("*.tmp-*"))


def test_build_memory_stays_below_the_decoded_size(tmp_path):
    """1,000 images at 128 px are 49 MB decoded: the old list + np.stack build took ~2x that on top of the imports."""
    _folder(tmp_path / "data", 1000, classes=1)
    _folder(tmp_path / "warm", 2, classes=1)
    out = _python(f"""
        import resource
        from cgantool.config import DataConfig
        from cgantool.data import load_dataset
        load_dataset(DataConfig(source={str(tmp_path / "warm")!r}, resolution=8))  # imports and plugins loaded
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ds = load_dataset(DataConfig(source={str(tmp_path / "data")!r}, resolution=128))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(len(ds), ds.images.numel(), (after - before) * 1024)
    """, {"CGANTOOL_DECODE_WORKERS": "0"})
    assert out.returncode == 0, out.stderr
    n, decoded, grown = map(int, out.stdout.split())
    assert n == 1000 and decoded == 1000 * 3 * 128 * 128
    print(f"peak RSS grew {grown / 1e6:.1f} MB")
    assert grown < decoded / 4, f"peak RSS grew {grown / 1e6:.1f} MB building {decoded / 1e6:.1f} MB of images"


def test_killed_build_is_not_trusted_and_the_next_load_rebuilds(tmp_path):
    files = _folder(tmp_path / "data", 40)
    out = _python(f"""
        import os, signal
        import cgantool.data.decode as decode
        from cgantool.config import DataConfig
        from cgantool.data import load_dataset
        real, count = decode._decode_one, [0]
        def dying(*args):
            count[0] += 1
            if count[0] == 20:
                os.kill(os.getpid(), signal.SIGKILL)  # the builder dies half-way, as under the OOM killer
            return real(*args)
        decode._decode_one = dying
        load_dataset(DataConfig(source={str(tmp_path / "data")!r}, resolution=8))
    """, {"CGANTOOL_DECODE_WORKERS": "0"})
    assert out.returncode == -9
    data = cache_dir() / "data"
    (partial,) = data.iterdir()
    assert ".tmp-" in partial.name and not (partial / "meta.json").exists()
    ds = load_dataset(DataConfig(source=str(tmp_path / "data"), resolution=8))
    assert np.array_equal(ds.images.numpy(), _expected(files, 8))
    assert [p.name for p in data.iterdir()] == [next(data.glob("folder-8-*")).name]  # the leftover was removed


def test_other_ranks_wait_for_the_builder(tmp_path, monkeypatch):
    _folder(tmp_path / "data", 4)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("CGANTOOL_CACHE_WAIT", "0.5")
    with pytest.raises(DataError, match="waited 0.5 s for local rank 0 to build the data cache") as e:
        load_dataset(DataConfig(source=str(tmp_path / "data"), resolution=8))
    assert "CGANTOOL_CACHE_WAIT" in e.value.hint and not (cache_dir() / "data").exists()
    monkeypatch.setenv("LOCAL_RANK", "0")  # rank 0 builds; then rank 1 finds the entry
    load_dataset(DataConfig(source=str(tmp_path / "data"), resolution=8))
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert len(load_dataset(DataConfig(source=str(tmp_path / "data"), resolution=8))) == 4


class _Tty:
    def __init__(self, tty: bool):
        self.text, self.tty = [], tty

    def write(self, s):
        self.text.append(s)

    def flush(self):
        pass

    def isatty(self):
        return self.tty


def test_progress_plain_lines_when_not_a_terminal(monkeypatch):
    stream = _Tty(False)
    with BuildProgress(20_000, interval=0.0, stream=stream) as p:
        p.advance(4_000)
    text = "".join(stream.text)
    assert "caching 4,000/20,000 images (" in text and "img/s, ETA " in text and "cached 4,000 images in" in text
    monkeypatch.setenv("RANK", "1")
    quiet = _Tty(False)
    with BuildProgress(10, interval=0.0, stream=quiet) as p:
        p.advance(5)
    assert quiet.text == []


def test_progress_bar_in_a_terminal():
    stream = _Tty(True)
    with BuildProgress(100, stream=stream) as p:
        assert p.bar is not None
        p.advance(50)


@pytest.mark.parametrize("rows", [None, slice(1, 3)])
def test_prefetched_batches_are_the_same(tmp_path, rows):
    _folder(tmp_path / "data", 13, classes=3)
    ds = load_dataset(DataConfig(source=str(tmp_path / "data"), resolution=8))
    cpu = torch.device("cpu")
    plain = RealBatches(ds, batch_size=5, seed=3, device=cpu, prefetch=0)
    ahead = RealBatches(ds, batch_size=5, seed=3, device=cpu)
    assert ahead.prefetch > 0
    want = [plain.next(rows) for _ in range(8)]  # 40 draws: crosses three epochs
    got = [ahead.next(rows) for _ in range(4)]
    resumed = RealBatches(ds, batch_size=5, seed=3, device=cpu, position=ahead.position)
    got += [resumed.next(rows) for _ in range(2)]
    ahead.position = resumed.position  # moved from outside: what was read ahead is dropped
    got += [ahead.next(rows) for _ in range(2)]
    for (wi, wl, wa), (gi, gl, ga) in zip(want, got, strict=True):
        assert torch.equal(wi, gi) and torch.equal(wl, gl) and torch.equal(wa, ga)
    ahead.close()
    in_memory = RealBatches(type(ds)(images=ds.images.clone(), source="x", labels=ds.labels), 5, 3, cpu)
    assert in_memory.prefetch == 0


def test_a_decode_process_that_dies_is_one_data_error(tmp_path, monkeypatch):
    import cgantool.data.decode as decode

    _folder(tmp_path / "data", 6)
    monkeypatch.setenv("CGANTOOL_DECODE_WORKERS", "2")
    monkeypatch.setattr(decode, "_decode_chunk", _die)  # forked workers see it
    with pytest.raises(DataError, match="a decode process died while caching 6 images") as e:
        load_dataset(DataConfig(source=str(tmp_path / "data"), resolution=8))
    assert "CGANTOOL_DECODE_WORKERS" in e.value.hint
    assert not list((cache_dir() / "data").iterdir())  # nothing left, nothing trusted


def _die(*args):
    os._exit(1)
