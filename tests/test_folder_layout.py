"""Issue 29 items 6 and 7: an image folder's layout follows torchvision's ImageFolder (root files beside class
folders are ignored, with one warning), and ``--data SOURCE:RES`` sets the resolution of any source; the README's
table of resolutions per architecture is the code's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from cgantool.data import parse_source
from tests.conftest import ROOT, TINY, invoke

STEP = ["--steps", "1", "--batch-size", "4", "--no-progress", "--device", "cpu", *TINY]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    """A cache of its own per test: other test files count the entries of the shared one."""
    monkeypatch.setenv("CGANTOOL_CACHE", str(tmp_path_factory.mktemp("cache")))


def _png(path: Path, color=(200, 30, 30), size=(40, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _class_folder(root: Path, per_class: int = 3, size=(40, 40)) -> Path:
    for c, color in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
        for i in range(per_class):
            _png(root / c / f"{i}.png", (color[0], 10 * i, color[2]), size)
    return root


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("warning:")]


# ----------------------------------------------------------------------------------------------
# 6: stray files at a class folder's root


def test_stray_root_images_are_ignored_with_one_warning(runner, tmp_path):
    data = _class_folder(tmp_path / "data")
    _png(data / "stray.png", (0, 255, 0))
    _png(data / "zz-other.jpg", (0, 255, 0))
    # contragan needs class labels: before, the stray files made the set unconditional and it refused
    result = invoke(runner, "train", "--preset", "contragan", "--data", f"{data}:32", "--out", tmp_path / "run", *STEP)
    assert result.exit_code == 0, result.output
    (line,) = _warnings(result.output)  # one line, however many files
    assert "ignored 2 image files at the root of" in line and "stray.png" in line and "ImageFolder" in line
    assert "class-conditional (2 classes)" in result.output and "6 images" in result.output
    # a cached second load says it again (what is trained does not depend on the cache)
    again = invoke(runner, "train", "--preset", "contragan", "--data", f"{data}:32", "--out", tmp_path / "run2", *STEP)
    assert again.exit_code == 0, again.output
    assert _warnings(again.output) == [line]


def test_flat_folder_and_clean_class_folders_warn_nothing(runner, tmp_path):
    flat = tmp_path / "flat"
    for i in range(4):
        _png(flat / f"{i}.png", (50 * i, 0, 0))
    (flat / "empty-subfolder").mkdir()  # a sub-folder without images is no class folder
    result = invoke(runner, "train", "--preset", "sngan", "--data", f"{flat}:32", "--out", tmp_path / "r1", *STEP)
    assert result.exit_code == 0, result.output
    assert not _warnings(result.output) and "unconditional" in result.output and "4 images" in result.output
    classes = _class_folder(tmp_path / "classes")
    result = invoke(runner, "train", "--preset", "sngan", "--data", f"{classes}:32", "--out", tmp_path / "r2", *STEP)
    assert result.exit_code == 0, result.output
    assert not _warnings(result.output) and "class-conditional (2 classes)" in result.output


def test_resolution_probe_ignores_root_files_too(runner, tmp_path):
    """The recipe's probe of a folder's image size reads the images training uses, not the stray root files."""
    data = _class_folder(tmp_path / "data", size=(40, 40))
    for i in range(8):  # more big stray files than class images: counted, the median would be 200 px
        _png(data / f"big{i}.png", size=(200, 200))
    result = invoke(runner, "config", "show", "--preset", "contragan", "--data", data)
    assert result.exit_code == 0, result.output
    assert re.search(r"^resolution = 32$", result.stdout, re.M), result.stdout


# ----------------------------------------------------------------------------------------------
# 7: --data SOURCE:RES


def test_parse_source_resolution_suffix(tmp_path):
    assert parse_source("shapes:16") == ("shapes", 16)
    assert parse_source("shapes-multi:64") == ("shapes-multi", 64)
    assert parse_source("cifar10-test:16") == ("cifar10-test", 16)
    assert parse_source("./digits:32") == ("./digits", 32)
    assert parse_source("captions.jsonl:64") == ("captions.jsonl", 64)
    assert parse_source("coco:captions_train2014.json:128") == ("coco:captions_train2014.json", 128)
    for unchanged in ("shapes", "./digits", "/data/x:y", "coco:captions.json", "coco:16", "x:", ":16"):
        assert parse_source(unchanged) == (unchanged, None)
    odd = tmp_path / "run:16"  # a path that exists as typed is never split
    odd.mkdir()
    assert parse_source(str(odd)) == (str(odd), None)
    assert parse_source(f"{odd}:32") == (str(odd), 32)
    (tmp_path / "c.json:64").write_text("{}")
    assert parse_source(f"coco:{tmp_path / 'c.json:64'}") == (f"coco:{tmp_path / 'c.json:64'}", None)


def test_folder_resolution_suffix_trains_at_that_resolution(runner, tmp_path):
    data = _class_folder(tmp_path / "data")
    result = invoke(runner, "train", "--data", f"{data}:16", "--out", tmp_path / "run", *STEP)
    assert result.exit_code == 0, result.output
    assert "· 16 px ·" in result.output
    # :RES wins over the recipe's choice from the data (40 px images → the 32 px recipe)
    shown = invoke(runner, "config", "show", "--preset", "sngan", "--data", f"{data}:48")
    assert shown.exit_code == 0, shown.output
    assert re.search(r"^resolution = 48$", shown.stdout, re.M) and f'source = "{data}"' in shown.stdout


def test_folder_whose_name_ends_in_a_number_is_used_as_typed(runner, tmp_path, monkeypatch):
    data = _class_folder(tmp_path / "imgs:16")
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, "train", "--data", "imgs:16", "--out", tmp_path / "run", *STEP,
                    "--set", "data.resolution=16")
    assert result.exit_code == 0, result.output
    assert "class-conditional (2 classes)" in result.output
    result = invoke(runner, "train", "--data", "imgs:16:32", "--out", tmp_path / "run2", *STEP)
    assert result.exit_code == 0, result.output
    assert "· 32 px ·" in result.output and (data / "cat").is_dir()


def test_captions_and_coco_resolution_suffix(runner, tmp_path):
    for name in ("captions.jsonl", "captions.json"):
        (tmp_path / name).write_text("")
    for source in (str(tmp_path / "captions.jsonl"), f"coco:{tmp_path / 'captions.json'}"):
        shown = invoke(runner, "config", "show", "--preset", "xmcgan", "--data", f"{source}:64")
        assert shown.exit_code == 0, shown.output
        assert re.search(r"^resolution = 64$", shown.stdout, re.M), shown.stdout
        assert f'source = "{source}"' in shown.stdout


# ----------------------------------------------------------------------------------------------
# README: how to set the resolution, and the table of resolutions per architecture


def _readme_table() -> dict[str, tuple[list[str], tuple[int, ...]]]:
    text = (ROOT / "README.md").read_text()
    head = "| arch | presets | resolutions (px) |"
    assert head in text, "README lacks the table of resolutions per architecture"
    rows = {}
    for line in text.split(head, 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        arch, presets, resolutions = (cell.strip() for cell in line.strip("|").split("|"))
        rows[arch.strip("`")] = (sorted(re.findall(r"`([^`]+)`", presets)),
                                 tuple(int(r) for r in resolutions.split(",")))
    return rows


def test_readme_resolution_table_is_the_codes():
    from cgantool.nets import arch_names, supported_resolutions
    from cgantool.recipes import preset_names, presets_dir, read_toml

    table = _readme_table()
    assert list(table) == arch_names()
    for arch, (presets, resolutions) in table.items():
        assert resolutions == supported_resolutions(arch), arch
        assert presets == sorted(n for n in preset_names()
                                 if read_toml(presets_dir() / f"{n}.toml").get("model", {}).get("arch") == arch), arch
    readme = (ROOT / "README.md").read_text()
    assert "--data ./digits:32" in readme and "wins over" in readme


def test_the_listing_keeps_rglobs_files_and_order(tmp_path):
    """image_files walks with os.scandir (2x faster on ImageNet-size trees) but must list what the rglob listing
    did, in the same order: the order is the dataset's (indices, labels, resumed runs) and fingerprints the cache."""
    import os

    from cgantool.data.sources import IMAGE_EXTENSIONS, image_files

    def by_rglob(root: Path):
        found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        at_root = [p for p in found if p.parent == root]
        return (found, []) if len(at_root) == len(found) else ([p for p in found if p.parent != root], at_root)

    t = tmp_path / "tree"
    names = ["a/x.png", "a-c/y.PNG", "a/b/z.jpg", "a.b/w.png", "root.png", "a.png", ".hidden/q.png", "a/.png",
             "A/u.jpeg", "a/not.txt", "a b/v.webp", "a/b.png", "a/b c/k.png", "Z.png", "deep/1/2/3/d.bmp"]
    for rel in names:
        (t / rel).parent.mkdir(parents=True, exist_ok=True)
        (t / rel).write_bytes(b"")
    os.symlink(t / "a", t / "linked_folder")  # not followed
    os.symlink(t / "a" / "x.png", t / "a" / "linked.png")  # kept
    os.symlink(t / "missing.png", t / "a" / "broken.png")  # not a file
    for root in (t, t / "a", t / "a-c", Path(os.path.relpath(t))):
        assert image_files(root) == by_rglob(root), root
    files, ignored = image_files(t)
    assert [p.relative_to(t).as_posix() for p in ignored] == ["Z.png", "a.png", "root.png"]
    assert "a/linked.png" in [p.relative_to(t).as_posix() for p in files]
