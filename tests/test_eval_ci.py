"""Issue 29 items 2 (eval parts), 9, 10 and 14 (rest): eval in CI and for scripts, through the real CLI.

- item 9: the Inception weights (or the named extractor) are checked before the checkpoint, the data and G are
  loaded; with ``--json FILE`` a failure writes ``{error, hint}`` there too; ``train --inception-weights``;
- item 10: ``eval --real DIR --fake DIR`` equals ``cleanfid.fid.compute_fid(DIR, DIR)`` (same extractor, same
  mode) to 1e-4; ``legacy_pytorch`` is renamed ``pytorch_resize`` (the old name still works, with a warning);
- item 14: ``--json FILE`` (``-`` = stdout) means the same in ``info``, ``eval`` and ``compare``; training grids say
  whether the EMA generator drew them;
- item 2: eval's long waits (feature extraction, the shapes probe's first training) print progress lines on
  stderr when it is a file.

No network and no real Inception weights: a scripted stand-in with the TorchScript file's interface, loaded with
``--unverified-inception`` (its sha256 is not clean-fid's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from tests.conftest import ROOT, TINY, invoke
from tests.test_cli import assert_usage_error

FX = "tests.fake_extractor:build"


@pytest.fixture(autouse=True)
def _no_weights_anywhere(tmp_path, monkeypatch):
    """No Inception weights reachable: no env override, no clean-fid copy, no download (the session's cache dir
    never holds weights; it keeps the shapes probe, trained once)."""
    from cgantool.eval import weights

    for var in ("CGANTOOL_INCEPTION_WEIGHTS", "CGANTOOL_UNVERIFIED_INCEPTION", "CGANTOOL_FEATURE_EXTRACTOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(weights, "CLEANFID_PATH", tmp_path / "cleanfid-tmp" / weights.FILENAME)
    monkeypatch.setattr(weights, "URL", "http://127.0.0.1:9/inception-2015-12-05.pt")  # nothing listens there


# --------------------------------------------------------------------------------- a scripted Inception stand-in


class _Layers(nn.Module):
    """Normalised [B, 3, 299, 299] → [B, 2048, 1, 1]: 4 x 4 average pooling, then a fixed projection."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(48, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(F.adaptive_avg_pool2d(x, 4).flatten(1))).reshape(x.shape[0], 2048, 1, 1)


class _StandIn(nn.Module):
    """The interface of clean-fid's inception-2015-12-05.pt: ``layers``, ``output``, and forward(img in [0, 255],
    return_features, use_fp16, no_output_bias) with its own bilinear resize to 299 inside."""

    def __init__(self):
        super().__init__()
        self.layers = _Layers()
        self.output = nn.Linear(2048, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        x = F.interpolate(img.to(torch.float32), size=(299, 299), mode="bilinear", align_corners=False)
        feats = self.layers((x - 128) / 128).reshape(img.shape[0], 2048)
        if return_features:
            return feats
        return F.softmax(F.linear(feats, self.output.weight) if no_output_bias else self.output(feats), dim=1)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "inception-2015-12-05.pt"
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(_StandIn()), str(path))
    return path


def _png_folder(folder: Path, n: int, sizes: list[int], seed: int, offset: int = 0) -> Path:
    """n PNGs of smooth random colour fields (sizes cycle through ``sizes``), a stray text file among them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        s = sizes[i % len(sizes)]
        base = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
        img = Image.fromarray(base).resize((s, s), Image.Resampling.BILINEAR)
        noise = rng.integers(-20, 21, (s, s, 3))
        arr = np.clip(np.asarray(img).astype(int) + noise + offset, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:03d}.png")
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def _cleanfid_fid(real: Path, fake: Path, model, mode: str, **kw) -> float:
    from cleanfid import fid

    return float(fid.compute_fid(str(real), str(fake), mode=mode, custom_feat_extractor=model, num_workers=0,
                                 batch_size=8, device=torch.device("cpu"), verbose=False, use_dataparallel=False,
                                 **kw))


def _eval_json(runner, *args) -> dict:
    result = invoke(runner, "eval", *args, "--device", "cpu", "--json", "-", "--no-progress")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ------------------------------------------------------------------------------------- item 10: FID = clean-fid's


@pytest.mark.parametrize("mode, real_sizes, fake_sizes", [
    ("clean", [16, 20], [24]),  # clean-fid resizes every image to 299 itself: sizes may differ, even in a folder
    ("legacy_tensorflow", [16], [24]),  # the network resizes inside: one size per folder (clean-fid batches them)
])
def test_folder_features_are_clean_fids_inception_path(runner, tmp_path, stand_in, monkeypatch, mode, real_sizes,
                                                        fake_sizes):
    """The Inception path against clean-fid's own compute_kid (its folder features, mode, network wrapper): KID,
    because a 2048 x 2048 matrix square root (FID) takes ~1 min on a shared CI core; the FID formula on those
    features is clean-fid's too (the test below compares FID itself)."""
    from cleanfid import fid
    from cleanfid.inception_torchscript import InceptionV3W

    real = _png_folder(tmp_path / "real", 30, real_sizes, seed=1)
    fake = _png_folder(tmp_path / "fake", 26, fake_sizes, seed=2, offset=30)
    doc = _eval_json(runner, "--real", real, "--fake", fake, "--kid", "--mode", mode,
                     "--inception-weights", stand_in, "--unverified-inception", "-b", "7")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = InceptionV3W(str(stand_in.parent), download=False, resize_inside=mode == "legacy_tensorflow")
    monkeypatch.setattr(fid, "build_feature_extractor", lambda mode, device, use_dataparallel=True: model)
    np.random.seed(0)  # clean-fid draws KID's subsets from NumPy's global RNG; cgantool from RandomState(--seed 0)
    expected = float(fid.compute_kid(str(real), str(fake), mode=mode, num_workers=0, batch_size=8,
                                     device=torch.device("cpu"), verbose=False, use_dataparallel=False))
    assert doc["num_real"] == 30 and doc["num_fake"] == 26 and doc["mode"] == mode
    assert expected > 1e-3  # the folders differ: a real comparison, not 0 = 0
    assert doc["metrics"]["kid"] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_folder_fid_with_a_user_extractor_equals_clean_fid_fed_the_stored_images(runner, tmp_path):
    """A --feature-extractor gets the images as stored (uint8, their own size), in folder and checkpoint eval alike;
    clean-fid's custom_feat_extractor gets them after its mode's resize unless told not to resize."""
    from tests.fake_extractor import TinyExtractor

    real = _png_folder(tmp_path / "real", 80, [16], seed=3)
    fake = _png_folder(tmp_path / "fake", 70, [24], seed=4, offset=25)  # another size: cgantool no longer resizes
    doc = _eval_json(runner, "--real", real, "--fake", fake, "--fid", "--feature-extractor", FX)
    fx = TinyExtractor()
    expected = _cleanfid_fid(real, fake, lambda x: fx(x.round().to(torch.uint8)), "clean", custom_fn_resize=lambda a: a)
    assert expected > 0.01
    assert doc["metrics"]["fid"] == pytest.approx(expected, abs=1e-4)


def test_legacy_pytorch_is_renamed_pytorch_resize(runner, tmp_path, stand_in):
    real = _png_folder(tmp_path / "real", 6, [16], seed=5)
    fake = _png_folder(tmp_path / "fake", 6, [16], seed=6)
    args = ("--real", real, "--fake", fake, "--kid", "--inception-weights", stand_in, "--unverified-inception",
            "--device", "cpu", "--json", "-", "--no-progress")
    new = invoke(runner, "eval", *args, "--mode", "pytorch_resize")
    old = invoke(runner, "eval", *args, "--mode", "legacy_pytorch")
    assert new.exit_code == old.exit_code == 0, old.output
    assert "--mode legacy_pytorch is now called pytorch_resize" in old.stderr
    assert "not clean-fid's legacy_pytorch" in old.stderr and "legacy_pytorch" not in new.stderr
    doc_new, doc_old = json.loads(new.stdout), json.loads(old.stdout)
    assert doc_old["mode"] == doc_new["mode"] == "pytorch_resize"
    assert doc_old["metrics"] == doc_new["metrics"] and doc_old["extractor"].endswith("/pytorch_resize")
    assert_usage_error(invoke(runner, "eval", *args, "--mode", "fancy"), "unknown --mode 'fancy'", "pytorch_resize")
    from cgantool.eval.protocols import PROTOCOLS

    assert PROTOCOLS["studiogan"].mode == "pytorch_resize"


# ------------------------------------------------------------------------------ item 9: the weights come first


@pytest.fixture
def no_loading(monkeypatch):
    """Fails the test if eval reads the data or builds G (the slow part) before the extractor is checked."""
    import cgantool.data
    import cgantool.engine.model

    def refuse(*a, **k):
        raise AssertionError("loaded before the feature extractor was checked")

    monkeypatch.setattr(cgantool.data, "load_dataset", refuse)
    monkeypatch.setattr(cgantool.engine.model, "load_generator", refuse)


def test_missing_weights_fail_before_the_checkpoint_data_and_generator(runner, tiny_run, tmp_path, no_loading):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    out = tmp_path / "ci" / "eval.json"
    result = invoke(runner, "eval", ckpt, "-n", "20", "--device", "cpu", "--json", out)
    assert_usage_error(result, "Inception weights", "--inception-weights")  # offline: one line, exit 2
    doc = json.loads(out.read_text())
    assert set(doc) == {"error", "hint", "exit_code"} and doc["exit_code"] == 2
    assert "Inception weights" in doc["error"] and "--inception-weights" in doc["hint"]

    result = invoke(runner, "eval", ckpt, "--device", "cpu", "--json", out, "--inception-weights", tmp_path / "no.pt")
    assert_usage_error(result, f"Inception weights not found at {tmp_path / 'no.pt'}")
    assert json.loads(out.read_text())["error"] == f"Inception weights not found at {tmp_path / 'no.pt'}"

    result = invoke(runner, "eval", ckpt, "--device", "cpu", "--json", "-", "--feature-extractor", "no_such_mod:fx")
    assert result.exit_code == 2 and "cannot import feature extractor module 'no_such_mod'" in result.stderr
    assert json.loads(result.stdout)["error"].startswith("cannot import feature extractor module 'no_such_mod'")


def test_a_missing_checkpoint_is_still_named_first(runner, tmp_path):
    out = tmp_path / "eval.json"
    result = invoke(runner, "eval", tmp_path / "nope.safetensors", "--device", "cpu", "--json", out)
    assert result.exit_code == 2 and "nope.safetensors" in json.loads(out.read_text())["error"]
    assert "Inception" not in result.output


def test_a_missed_gate_keeps_the_result_json(runner, tmp_path):
    real = _png_folder(tmp_path / "real", 8, [16], seed=9)
    fake = _png_folder(tmp_path / "fake", 8, [16], seed=10, offset=40)
    out = tmp_path / "eval.json"
    result = invoke(runner, "eval", "--real", real, "--fake", fake, "--kid", "--feature-extractor", FX,
                    "--device", "cpu", "--json", out, "--max-fid", "0", "--no-progress")
    assert result.exit_code == 1 and "above --max-fid" in result.stderr
    assert "fid" in json.loads(out.read_text())["metrics"]  # the result, not an {error} object


def test_json_never_overwrites_a_file_that_is_not_json(runner, tiny_run, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    before = ckpt.read_bytes()
    for args in (("eval", "--json", ckpt, "--feature-extractor", FX), ("info", ckpt, "--json", ckpt)):
        result = invoke(runner, *args)  # e.g. the checkpoint typed after --json by mistake
        assert_usage_error(result, "exists and does not hold JSON")
    assert ckpt.read_bytes() == before


def test_train_has_inception_weights_and_checks_them_before_the_data(runner, tmp_path, stand_in, monkeypatch):
    import cgantool.engine.loop as loop

    loaded = []
    real_load = loop.load_dataset
    monkeypatch.setattr(loop, "load_dataset", lambda cfg: loaded.append(cfg) or real_load(cfg))
    base = ("train", "--preset", "sngan", "--data", "shapes:16", "--steps", "2", "--batch-size", "8", "--no-progress",
            "--device", "cpu", *TINY, "--set", "eval.every=2", "--set", "eval.num_samples=16",
            "--set", "eval.metrics=['kid']",
            "--set", "model.conditioning=none")  # (no shapes probe to train: it has its own test)
    result = invoke(runner, *base, "--out", tmp_path / "a", "--inception-weights", tmp_path / "missing.pt")
    assert_usage_error(result, f"Inception weights not found at {tmp_path / 'missing.pt'}", "--inception-weights")
    assert loaded == []  # failed before the data was read

    monkeypatch.setenv("CGANTOOL_UNVERIFIED_INCEPTION", "1")  # the stand-in is not clean-fid's file
    result = invoke(runner, *base, "--out", tmp_path / "b", "--inception-weights", stand_in)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/kid" in r for r in rows)


# ----------------------------------------------------------------------- item 14: --json FILE in info, compare


def test_info_json_file_or_stdout(runner, tiny_run, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    result = invoke(runner, "info", ckpt, "--json", "-")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # stdout holds only the JSON; the panel went to stderr
    assert doc["step"] == 8 and "preset" in result.stderr
    out = tmp_path / "info.json"
    result = invoke(runner, "info", ckpt, "--json", out)
    assert result.exit_code == 0 and json.loads(out.read_text()) == doc and "preset" in result.stdout
    result = invoke(runner, "info", tmp_path / "missing.safetensors", "--json", out)
    assert result.exit_code == 2 and "missing.safetensors" in json.loads(out.read_text())["error"]
    result = invoke(runner, "info", ckpt, "--json")  # the value is required, as in eval and compare
    assert result.exit_code == 2 and "requires an argument" in result.output


def test_compare_json_file_or_stdout(runner, tiny_run, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tiny_run, other, ignore=shutil.ignore_patterns("*.safetensors", "*.lock"))
    config = other / "config.toml"
    config.write_text(config.read_text().replace("seed = 0", "seed = 7", 1))
    plot = tmp_path / "cmp.png"
    result = invoke(runner, "compare", tiny_run, other, "--metric", "d/adv", "--plot", plot, "--json", "-")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["name"] for r in doc["runs"]] == ["tiny", "other"] and doc["metric"] == "d/adv"
    assert doc["runs"][0]["steps"] == 8 and isinstance(doc["runs"][0]["final"], float)
    assert doc["settings_that_differ"] == {"data.shapes_seed": [0, 7]} and doc["plot"] == str(plot)
    assert "cgantool compare" in result.stderr  # the table went to stderr
    out = tmp_path / "cmp.json"
    result = invoke(runner, "compare", tiny_run, other, "--metric", "d/adv", "--plot", plot, "--json", out)
    assert result.exit_code == 0 and json.loads(out.read_text()) == doc and "cgantool compare" in result.stdout
    result = invoke(runner, "compare", tiny_run, "--json", out)
    assert result.exit_code == 2 and json.loads(out.read_text())["error"] == "compare needs at least two runs"


# ------------------------------------------------------------------- item 14: grids say which generator drew them


def test_training_grids_say_whether_they_show_the_ema_generator(runner, tiny_run, tmp_path):
    from cgantool.checkpoint import load_checkpoint

    runs = {"raw": tiny_run}
    out = tmp_path / "ema"
    result = invoke(runner, "train", "--preset", "sngan", "--data", "shapes:16", "--steps", "4", "--batch-size", "8",
                    "--out", out, "--no-progress", "--device", "cpu", *TINY, "--set", "train.ema_decay=0.9")
    assert result.exit_code == 0, result.output
    runs["EMA"] = out
    for generator, run in runs.items():
        assert load_checkpoint(run / "checkpoints" / "last.safetensors").has("G_ema") == (generator == "EMA")
        about = (run / "samples" / "README.txt").read_text()
        info = Image.open(run / "samples" / "step_0000004.png").info
        assert info["generator"] == generator and info["step"] == "4"
        if generator == "EMA":
            assert "the EMA generator (train.ema_decay=0.9" in about and "EMA generator" in info["Description"]
        else:
            assert "the raw generator G (train.ema_decay=0" in about and "raw generator" in info["Description"]


# --------------------------------------------------------------------------- item 2: progress of eval's waits


def test_eval_prints_progress_lines_when_stderr_is_a_file(tmp_path):
    real = _png_folder(tmp_path / "real", 12, [16], seed=7)
    fake = _png_folder(tmp_path / "fake", 12, [16], seed=8)
    log = tmp_path / "stderr.log"
    env = {**os.environ, "CGANTOOL_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    with open(log, "w") as stderr:
        proc = subprocess.run([sys.executable, "-m", "cgantool", "eval", "--real", str(real), "--fake", str(fake),
                               "--kid", "--feature-extractor", FX, "--device", "cpu", "-b", "4", "--json", "-",
                               "--progress-every", "0"], stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT, env=env,
                              timeout=300)
    assert proc.returncode == 0, log.read_text()
    lines = log.read_text().splitlines()
    assert f"eval: features of {real}: 12 images" in lines  # the opening line, before the wait
    assert f"eval: features of {fake}: 4/12 images" in "\n".join(lines)  # a line every --progress-every seconds
    assert f"eval: features of {fake}: 12 images in 0s" in lines or any(
        line.startswith(f"eval: features of {fake}: 12 images in ") for line in lines)
    assert "\x1b[" not in log.read_text()  # plain lines, no terminal codes
    assert json.loads(proc.stdout)["num_fake"] == 12  # stdout keeps only the JSON

    proc = subprocess.run([sys.executable, "-m", "cgantool", "eval", "--real", str(real), "--fake", str(fake),
                           "--kid", "--feature-extractor", FX, "--device", "cpu", "--json", "-", "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0 and "eval: features" not in proc.stderr


def test_the_shapes_probes_first_training_shows_progress(tmp_path, monkeypatch):
    from cgantool.eval import probe
    from cgantool.eval.progress import showing

    monkeypatch.setattr(probe, "_path", lambda resolution: tmp_path / f"probe-{resolution}.safetensors")
    log = tmp_path / "stderr.log"
    with open(log, "w") as stream, showing(True, every=0.0, stream=stream):
        probe.load_probe(16, n_train=64, steps=3)
    text = log.read_text()
    assert "eval: training the shapes attribute probe for 16 px (once, then cached): 3 steps" in text
    assert "3/3 steps" in text and "3 steps in " in text
    with open(log, "w") as stream, showing(True, every=0.0, stream=stream):
        probe.load_probe(16, n_train=64, steps=3)  # cached: no wait, no line
    assert log.read_text() == ""
    probe.load_probe(17, n_train=64, steps=2)  # outside `showing` (a notebook, train): silent
