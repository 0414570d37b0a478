"""`cgantool eval` end to end offline (test-built feature extractor), JSON, gates, and the Inception offline story."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from PIL import Image

from cgantool.errors import CgantoolError, OfflineError
from cgantool.eval import weights as weights_module
from cgantool.eval.inception import load_feature_extractor, resolve_inception_weights
from tests.conftest import invoke
from tests.test_cli import assert_usage_error

FX = "tests.fake_extractor:build"


def _eval(runner, *args):
    return invoke(runner, "eval", *args, "--feature-extractor", FX, "--device", "cpu")


def test_eval_checkpoint_json_to_stdout(tiny_run, runner):
    result = _eval(runner, tiny_run / "checkpoints" / "last.safetensors", "--fid", "--kid", "--is", "--prdc",
                   "--num-samples", "60", "--batch-size", "25", "--json", "-")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"fid", "kid", "kid_std", "is", "is_std", "precision", "recall", "density", "coverage"} <= doc["metrics"].keys()
    assert doc["num_fake"] == 60 and doc["num_real"] == 60 and doc["step"] == 8
    assert doc["extractor"] == FX and doc["mode"] == "clean" and doc["seed"] == 0
    assert doc["dataset"] == "shapes" and "cgantool_version" in doc and doc["seconds"] >= 0
    assert doc["metrics"]["fid"] > 0


def test_eval_defaults_to_fid_and_kid_and_writes_a_file(tiny_run, runner, tmp_path):
    out = tmp_path / "r.json"
    result = _eval(runner, tiny_run / "checkpoints" / "last.safetensors", "-n", "30", "--json", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())["metrics"]
    assert {"fid", "kid", "kid_std"} <= metrics.keys() and "is" not in metrics and "precision" not in metrics


def test_per_class_fid(tiny_run, runner):
    result = _eval(runner, tiny_run / "checkpoints" / "last.safetensors", "--per-class", "-n", "200", "--json", "-")
    assert result.exit_code == 0, result.output
    per = json.loads(result.stdout)["metrics"]["fid_per_class"]
    assert "red_circle" in per and all(v >= 0 for v in per.values())


def test_gates_exit_1(tiny_run, runner):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    result = _eval(runner, ckpt, "-n", "30", "--max-fid", "0.0001")
    assert result.exit_code == 1 and "above --max-fid" in result.output
    assert _eval(runner, ckpt, "-n", "30", "--max-fid", "1e9").exit_code == 0
    assert _eval(runner, ckpt, "-n", "30", "--min-is", "1e9").exit_code == 1


def _folder(path, images):
    path.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(path / f"{i:04d}.png")


def test_folders_identical_zero_and_shapes_far_below_noise(runner, tmp_path):
    import torch

    from cgantool.data.shapes import generate_shapes

    _folder(tmp_path / "a", generate_shapes(150, 16, seed=0).images)
    _folder(tmp_path / "b", generate_shapes(150, 16, seed=1).images)
    _folder(tmp_path / "noise", torch.randint(0, 256, (150, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))

    def fid(real, fake):
        r = _eval(runner, "--real", tmp_path / real, "--fake", tmp_path / fake, "--fid", "--json", "-")
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)["metrics"]["fid"]

    assert abs(fid("a", "a")) < 1e-6
    assert fid("a", "b") * 10 < fid("a", "noise")


def test_eval_bad_input(tiny_run, runner, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    assert_usage_error(_eval(runner, ckpt, "--mode", "fancy"), "unknown --mode")
    assert_usage_error(_eval(runner, "--real", tmp_path), "go together")
    assert_usage_error(_eval(runner, tmp_path / "x.safetensors"), "checkpoint not found")
    assert_usage_error(invoke(runner, "eval", ckpt, "--feature-extractor", "nope_module:f"), "cannot import")
    assert_usage_error(invoke(runner, "eval", ckpt, "--feature-extractor", "tests.fake_extractor:nothing"), "has no function")


def test_eval_without_inception_weights_fails_fast_offline(tiny_run, runner, monkeypatch, tmp_path):
    monkeypatch.setattr(weights_module, "URL", "http://127.0.0.1:9/inception-2015-12-05.pt")
    monkeypatch.setattr(weights_module, "CLEANFID_PATH", tmp_path / "absent.pt")
    monkeypatch.delenv("CGANTOOL_INCEPTION_WEIGHTS", raising=False)
    start = time.monotonic()
    result = invoke(runner, "eval", tiny_run / "checkpoints" / "last.safetensors", "--fid", "-n", "10")
    assert time.monotonic() - start < 30
    assert_usage_error(result, "could not download the Inception weights", "inception-2015-12-05.pt")


def test_resolve_weights_explicit_env_and_cache(tmp_path, monkeypatch):
    with pytest.raises(CgantoolError, match="not found at"):
        resolve_inception_weights(str(tmp_path / "nope.pt"))
    f = tmp_path / "w.pt"
    f.write_bytes(b"x")
    assert resolve_inception_weights(str(f)) == f
    monkeypatch.setenv("CGANTOOL_INCEPTION_WEIGHTS", str(f))
    assert resolve_inception_weights() == f
    monkeypatch.setenv("CGANTOOL_INCEPTION_WEIGHTS", str(tmp_path / "missing.pt"))
    with pytest.raises(CgantoolError, match="missing file"):
        resolve_inception_weights()


def test_download_to_a_silent_server_times_out(tmp_path, monkeypatch):
    # a local server that accepts the connection and never answers: a black-holed network
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    monkeypatch.setattr(weights_module, "CLEANFID_PATH", tmp_path / "absent.pt")
    monkeypatch.delenv("CGANTOOL_INCEPTION_WEIGHTS", raising=False)
    start = time.monotonic()
    with pytest.raises(OfflineError) as e:
        resolve_inception_weights(timeout=1.0, url=f"http://127.0.0.1:{port}/inception-2015-12-05.pt")
    assert time.monotonic() - start < 10
    assert weights_module.URL in e.value.hint and str(weights_module.cache_path()) in e.value.hint
    assert not list(weights_module.cache_path().parent.glob(".*tmp*"))
    server.close()


def test_load_feature_extractor():
    fx = load_feature_extractor(FX)
    import torch

    feats = fx(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    assert feats.shape == (2, 64)
    with pytest.raises(CgantoolError, match="module:function"):
        load_feature_extractor("no_colon")


def test_train_evaluates_and_keeps_best(runner, tmp_path):
    from tests.conftest import TINY

    out = tmp_path / "ev"
    result = invoke(runner, "train", "--data", "shapes:16", "--steps", "4", "--batch-size", "4", "--out", out,
                    "--no-progress", *TINY, "--set", "eval.every=2", "--set", "eval.num_samples=20",
                    "--set", f"eval.feature_extractor='{FX}'", "--set", "eval.metrics=['fid', 'kid']")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/fid" in r]
    assert [r["step"] for r in evals] == [2, 4] and all("eval/kid" in r for r in evals)
    best = out / "checkpoints" / "best.safetensors"
    assert best.exists()
    from cgantool.checkpoint import load_checkpoint

    ckpt = load_checkpoint(best)
    assert ckpt.metrics["eval/fid"] == min(r["eval/fid"] for r in evals)
    assert load_checkpoint(out / "checkpoints" / "last.safetensors").state["best_fid"] == ckpt.metrics["eval/fid"]


def test_train_with_missing_extractor_fails_before_training(runner, tmp_path):
    out = tmp_path / "ev2"
    result = invoke(runner, "train", "--data", "shapes:16", "--steps", "2", "--out", out, "--no-progress",
                    "--set", "eval.every=1", "--set", "eval.feature_extractor='nope_mod:f'")
    assert_usage_error(result, "cannot import")
    assert not out.exists()


def test_attribute_probe_reads_real_shapes_and_scores_a_generator(tiny_run, runner):
    from cgantool.data.shapes import generate_shapes
    from cgantool.eval.probe import attribute_accuracy, load_probe, real_ceiling

    probe = load_probe(16)
    ceiling = real_ceiling(probe, 16, n=500)
    assert ceiling > 0.8  # chance is 1/20
    # real images scored against wrong labels (class + 1) get almost nothing right
    data = generate_shapes(300, 16, seed=77)
    wrong = attribute_accuracy(data.images, (data.labels + 1) % 20, probe)
    assert wrong["attribute_accuracy"] < 0.2 and attribute_accuracy(data.images, data.labels, probe)["attribute_accuracy"] > 0.8
    # eval on a shapes checkpoint reports it beside the ceiling
    result = _eval(runner, tiny_run / "checkpoints" / "last.safetensors", "-n", "40", "--json", "-")
    metrics = json.loads(result.stdout)["metrics"]
    assert 0 <= metrics["attribute_accuracy"] <= 1 and metrics["attribute_accuracy_real"] > 0.8


def _scripted_inception(path):
    """A TorchScript stand-in with the interface of clean-fid's inception-2015-12-05.pt: a ``layers`` module
    (normalised 299x299 input → [B, 2048, 1, 1]) and ``forward(img, return_features, use_fp16, no_output_bias)``
    that resizes internally and returns features or class probabilities."""
    import torch
    from torch import nn

    class Layers(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pooled = torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)  # [B, 192]
            return pooled.repeat(1, 11)[:, :2048].reshape(x.shape[0], 2048, 1, 1)

    class Inception(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = Layers()

        def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                    no_output_bias: bool = False) -> torch.Tensor:
            x = torch.nn.functional.interpolate(img, size=(299, 299), mode="bilinear", align_corners=False)
            feats = self.layers((x - 128) / 128).flatten(1)
            if return_features:
                return feats
            logits = feats[:, :1008] * 10
            if not no_output_bias:
                logits = logits + 1.0
            return torch.softmax(logits, dim=1)

    torch.jit.save(torch.jit.script(Inception()), str(path))


@pytest.mark.parametrize("mode", ["clean", "pytorch_resize", "legacy_tensorflow"])  # (pytorch_resize: formerly
# legacy_pytorch, renamed as it is not clean-fid's mode of that name; tests/test_eval_ci.py checks the old name)
def test_inception_path_with_a_scripted_stand_in(tiny_run, runner, tmp_path, mode, monkeypatch):
    import hashlib

    weights = tmp_path / "inception-2015-12-05.pt"
    _scripted_inception(weights)
    args = ("eval", tiny_run / "checkpoints" / "last.safetensors", "--fid", "--is", "-n", "20",
            "--inception-weights", weights, "--mode", mode, "--json", "-", "--device", "cpu")
    result = invoke(runner, *args, "--unverified-inception")  # not clean-fid's file: loads only with the flag
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert json.loads(result.stdout)["extractor"] == f"unverified-inception-{digest[:12]}/{mode}"
    monkeypatch.setattr(weights_module, "SHA256", digest)  # as if the stand-in were clean-fid's file
    result = invoke(runner, *args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["extractor"] == f"inception-2015-12-05/{mode}" and doc["mode"] == mode
    assert doc["metrics"]["fid"] >= 0 and 1.0 <= doc["metrics"]["is"] <= 1008
