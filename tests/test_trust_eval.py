"""Issue 25 -- nothing runs that the user did not choose, and no traceback on bad input, in `eval` and its helpers:

- Inception weights are TorchScript (loading runs their code): only clean-fid's file (sha256) loads, unless
  ``--unverified-inception`` says otherwise; clean-fid's copy in world-writable /tmp is used only when it matches;
- a checkpoint naming an ``hf:`` text encoder never makes cgantool download it without ``--allow-download``;
- a feature extractor returning NaN / a wrong shape, and an unwritable ``--json PATH``, are one error line.

No network and no real weights: stand-ins are scripted here, the expected sha256 is patched where a test needs a
"verified" file, and transformers is replaced by a recorder.
"""

from __future__ import annotations

import hashlib
import json
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cgantool.errors import CgantoolError, OfflineError
from cgantool.eval import evaluate, inception
from cgantool.eval import weights as weights_module
from tests.conftest import invoke
from tests.test_cli import assert_usage_error

CLOSED_PORT_URL = "http://127.0.0.1:9/inception-2015-12-05.pt"  # the discard port: nothing listens there


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A fresh cache dir, no env overrides, clean-fid's /tmp location inside tmp_path, no download possible."""
    monkeypatch.setenv("CGANTOOL_CACHE", str(tmp_path / "cache"))
    for var in ("CGANTOOL_INCEPTION_WEIGHTS", "CGANTOOL_UNVERIFIED_INCEPTION", "HF_HUB_OFFLINE",
                "CGANTOOL_FEATURE_EXTRACTOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(weights_module, "CLEANFID_PATH", tmp_path / "world-writable" / weights_module.FILENAME)
    monkeypatch.setattr(weights_module, "URL", CLOSED_PORT_URL)


class _ConstantLayers(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[0], 2048, 1, 1)


class _ConstantInception(nn.Module):
    """The planted file of the issue: clean-fid's interface, but the same features for every image (FID 0)."""

    def __init__(self):
        super().__init__()
        self.layers = _ConstantLayers()

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        feats = torch.ones(img.shape[0], 2048)
        return feats if return_features else torch.softmax(feats[:, :1008], dim=1)


def _planted(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(_ConstantInception()), str(path))
    return path


@pytest.fixture
def jit_loads(monkeypatch):
    """Every torch.jit.load call (a TorchScript file's code can only run after one)."""
    calls = []
    real = torch.jit.load

    def spy(f, *args, **kwargs):
        calls.append(str(f))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch.jit, "load", spy)
    return calls


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two folders of four 16 px images (real: noise; fake: flat grey)."""
    rng = np.random.default_rng(0)
    real, fake = tmp_path / "real", tmp_path / "fake"
    for folder in (real, fake):
        folder.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(real / f"{i}.png")
        Image.fromarray(np.full((16, 16, 3), 128, dtype=np.uint8)).save(fake / f"{i}.png")
    return real, fake


def _eval_folders(runner, tmp_path, *args):
    """eval of two folders with KID only (FID's 2048 x 2048 matrix square root would take seconds here)."""
    real, fake = _folders(tmp_path)
    return invoke(runner, "eval", "--real", real, "--fake", fake, "--kid", "--device", "cpu", "-b", "2", *args)


# ------------------------------------------------------------------------------- (7) Inception weights: sha256


def test_the_pinned_digest_is_clean_fids_file():
    # the value k-diffusion pins for this URL (crowsonkb/k-diffusion, k_diffusion/evaluation.py)
    assert weights_module.SHA256 == "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
    assert weights_module.URL.endswith("/inception-2015-12-05.pt")


def test_a_planted_file_in_the_cache_is_refused_before_it_runs(runner, tmp_path, jit_loads):
    _planted(weights_module.cache_path())
    result = _eval_folders(runner, tmp_path, "--max-fid", "1")
    assert_usage_error(result, "not clean-fid's inception-2015-12-05.pt", "--unverified-inception",
                       "CGANTOOL_UNVERIFIED_INCEPTION")
    assert str(weights_module.cache_path()) in result.output
    assert jit_loads == []  # refused before torch.jit.load: none of its code ran
    assert "fid" not in result.stdout


def test_a_planted_file_at_an_explicit_path_or_env_var_is_refused(runner, tmp_path, jit_loads, monkeypatch):
    weights = _planted(tmp_path / "mine" / weights_module.FILENAME)
    assert_usage_error(_eval_folders(runner, tmp_path, "--inception-weights", weights), "not clean-fid's")
    monkeypatch.setenv("CGANTOOL_INCEPTION_WEIGHTS", str(weights))
    assert_usage_error(invoke(runner, "eval", "--real", tmp_path / "real", "--fake", tmp_path / "fake", "--fid",
                              "--device", "cpu"), "not clean-fid's", str(weights))
    assert jit_loads == []


def test_a_planted_file_in_cleanfids_tmp_location_is_ignored(runner, tmp_path, jit_loads, monkeypatch):
    monkeypatch.setattr(weights_module, "MIN_BYTES", 0)  # the stand-in is small: reach the hash check
    planted = _planted(weights_module.CLEANFID_PATH)
    result = _eval_folders(runner, tmp_path, "--max-fid", "1")
    # nothing else is on this machine and nothing can be downloaded: that is the one error; the planted file
    # was hashed, found wrong and ignored (a warning), never copied into the cache and never loaded
    assert_usage_error(result, "could not download the Inception weights")
    assert f"warning: ignoring {planted}" in result.output
    assert not weights_module.cache_path().exists() and jit_loads == []


def test_a_matching_file_in_cleanfids_tmp_location_is_used_as_a_verified_copy(runner, tmp_path, jit_loads,
                                                                               monkeypatch):
    monkeypatch.setattr(weights_module, "MIN_BYTES", 0)
    planted = _planted(weights_module.CLEANFID_PATH)
    monkeypatch.setattr(weights_module, "SHA256", hashlib.sha256(planted.read_bytes()).hexdigest())
    result = _eval_folders(runner, tmp_path, "--json", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["extractor"] == "inception-2015-12-05/clean"
    assert jit_loads == [str(weights_module.cache_path())]  # loaded from cgantool's copy, not from /tmp
    assert weights_module.cache_path().read_bytes() == planted.read_bytes()


def test_the_explicit_flag_loads_a_different_file_and_says_so(runner, tmp_path, jit_loads, monkeypatch):
    weights = _planted(tmp_path / "mine" / weights_module.FILENAME)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    result = _eval_folders(runner, tmp_path, "--inception-weights", weights, "--unverified-inception", "--json", "-")
    assert result.exit_code == 0, result.output
    assert "warning: loading UNVERIFIED Inception weights" in result.stderr and digest[:12] in result.stderr
    doc = json.loads(result.stdout)
    # constant features: a perfect score (what the planted file did), but the result names the unverified network
    assert doc["extractor"] == f"unverified-inception-{digest[:12]}/clean"
    assert doc["metrics"]["kid"] == pytest.approx(0.0, abs=1e-9)
    assert jit_loads == [str(weights)]
    # the environment variable is the same consent (e.g. for evaluation during training)
    monkeypatch.setenv("CGANTOOL_UNVERIFIED_INCEPTION", "1")
    r = invoke(runner, "eval", "--real", tmp_path / "real", "--fake", tmp_path / "fake", "--kid", "--device", "cpu",
               "--inception-weights", weights, "--json", "-")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["extractor"] == doc["extractor"]


def test_unverified_weights_never_share_the_reference_feature_cache(tmp_path, monkeypatch):
    weights = _planted(tmp_path / "mine" / weights_module.FILENAME)
    opts = evaluate.EvalOptions(num_samples=8, batch_size=4, inception_weights=str(weights), unverified_inception=True)
    unverified = evaluate.Extractor(opts)
    monkeypatch.setattr(weights_module, "SHA256", hashlib.sha256(weights.read_bytes()).hexdigest())
    verified = evaluate.Extractor(evaluate.EvalOptions(num_samples=8, batch_size=4, inception_weights=str(weights)))
    # the cache key of the real features is the extractor's name: the two must differ
    assert verified.name == "inception-2015-12-05/clean" and unverified.name.startswith("unverified-inception-")


def test_hashing_reads_the_file_in_chunks(tmp_path, monkeypatch):
    data = bytes(range(256)) * 22  # 5632 bytes
    path = tmp_path / "w.pt"
    path.write_bytes(data)
    reads = []
    real_open = open

    class Spy:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            reads.append(n)
            return self.f.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(weights_module, "HASH_CHUNK", 1000)
    monkeypatch.setattr(weights_module, "open", lambda p, mode="r": Spy(real_open(p, mode)), raising=False)
    assert weights_module.sha256_file(path) == hashlib.sha256(data).hexdigest()
    # 5 full chunks, a 632-byte tail, one empty read: never the whole file at once
    assert reads == [1000] * 7
    # verification goes through the same chunked reader, and a "verified" file needs no flag and prints nothing
    monkeypatch.setattr(weights_module, "SHA256", hashlib.sha256(data).hexdigest())
    assert weights_module.verify_inception_weights(path) == weights_module.SHA256


def test_verification_errors_and_consent(tmp_path, monkeypatch, capsys):
    path = tmp_path / "other.pt"
    path.write_bytes(b"not clean-fid's")
    with pytest.raises(CgantoolError, match="not clean-fid's") as e:
        weights_module.verify_inception_weights(path)
    assert "--unverified-inception" in e.value.hint and weights_module.URL in e.value.hint
    assert capsys.readouterr().err == ""
    digest = hashlib.sha256(b"not clean-fid's").hexdigest()
    assert weights_module.verify_inception_weights(path, unverified=True) == digest
    assert "UNVERIFIED" in capsys.readouterr().err
    assert not weights_module.unverified_allowed()
    for value, allowed in (("1", True), ("yes", True), ("0", False), ("false", False), ("", False)):
        monkeypatch.setenv("CGANTOOL_UNVERIFIED_INCEPTION", value)
        assert weights_module.unverified_allowed() is allowed, value
    with pytest.raises(CgantoolError, match="not clean-fid's"):
        inception.load_torchscript(path)  # the public loader checks too


def test_a_download_with_another_digest_is_rejected(tmp_path):
    from tests.test_inception_offline import _Server, _zip_bytes

    body = _zip_bytes(500)
    server = _Server(body)
    try:
        with pytest.raises(OSError, match="sha256 is"):
            weights_module.download_file(server.url, tmp_path / "w.pt", timeout=5.0, max_seconds=30.0,
                                    sha256=hashlib.sha256(b"something else").hexdigest())
        path = weights_module.download_file(server.url, tmp_path / "w.pt", timeout=5.0, max_seconds=30.0,
                                       sha256=hashlib.sha256(body).hexdigest())
    finally:
        server.close()
    assert path.read_bytes() == body and sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


# ---------------------------------------------------------------- (10) hf: text encoders named by a checkpoint


@pytest.fixture
def fake_transformers(monkeypatch):
    """A stand-in ``transformers``: records every from_pretrained call; the model is 'on the hub' only (a
    local-only load fails as transformers does, with an OSError)."""
    calls = []

    class _Auto:
        @staticmethod
        def from_pretrained(name, **kwargs):
            calls.append((name, kwargs))
            if kwargs.get("local_files_only"):
                raise OSError(f"{name} is not in the cached files and outgoing traffic has been disabled")
            raise OSError(f"could not reach the hub for {name} (this test has no network)")

    module = types.ModuleType("transformers")
    module.AutoTokenizer = module.AutoModel = _Auto
    monkeypatch.setitem(sys.modules, "transformers", module)
    return calls


def test_from_info_loads_hf_models_from_local_files_unless_allowed(fake_transformers, monkeypatch):
    from cgantool.text.encoders import HFText, from_info

    info = {"encoder": "hf:someone/remote-model", "dim": 16, "max_words": 8}
    with pytest.raises(OfflineError) as e:
        from_info(info)
    assert "'someone/remote-model' is not on this machine" in e.value.message
    assert "--allow-download" in e.value.hint
    assert fake_transformers == [("someone/remote-model", {"local_files_only": True, "trust_remote_code": False})]
    fake_transformers.clear()
    with pytest.raises(OfflineError, match="cannot load the text encoder 'someone/remote-model'"):
        from_info(info, allow_download=True)
    assert fake_transformers[0][1] == {"local_files_only": False, "trust_remote_code": False}
    fake_transformers.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub's own switch still wins over consent
    with pytest.raises(OfflineError):
        from_info(info, allow_download=True)
    assert fake_transformers[0][1]["local_files_only"] is True
    fake_transformers.clear()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(OfflineError):  # a model the user names in their own config (training) may be fetched
        HFText("someone/remote-model")
    assert fake_transformers[0][1] == {"local_files_only": False, "trust_remote_code": False}


@pytest.mark.parametrize("info, message", [
    ({"encoder": "hf:x"}, "incomplete"),
    ({"encoder": "nonsense", "max_words": 8}, "unknown text encoder 'nonsense'"),
    ({"encoder": "builtin", "vocab": ["a"], "dim": "many", "max_words": 8}, "incomplete"),
])
def test_from_info_damaged_descriptions(info, message):
    from cgantool.errors import CheckpointError
    from cgantool.text.encoders import from_info

    with pytest.raises(CheckpointError, match=message):
        from_info(info)


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory, runner):
    """A tiny text-to-image checkpoint whose stored config and text description name ``hf:someone/remote-model``."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("hfckpt") / "run"
    result = invoke(runner, "train", "--preset", "xmcgan", "--data", "shapes:16", "--steps", "1", "--batch-size", "4",
                    "--out", out, "--no-progress", "--device", "cpu", "--set", "model.g_channels=4",
                    "--set", "model.d_channels=4", "--set", "data.num_images=32", "--set", "text.dim=8",
                    "--set", "text.pretrain_steps=1", "--set", "train.sample_every=100",
                    "--set", "train.checkpoint_every=1")
    assert result.exit_code == 0, result.output
    path = out / "checkpoints" / "last.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    config, data_info = json.loads(meta["config"]), json.loads(meta["data_info"])
    config["text"]["encoder"] = data_info["text"]["encoder"] = "hf:someone/remote-model"
    meta.update(config=json.dumps(config), data_info=json.dumps(data_info))
    tensors = {k: v for k, v in load_file(str(path)).items() if not k.startswith("text_encoder.")}
    save_file(tensors, str(path), metadata=meta)
    return path


def test_eval_of_a_checkpoint_naming_an_hf_model_downloads_nothing_without_consent(hf_checkpoint, runner,
                                                                                    fake_transformers):
    args = ("eval", hf_checkpoint, "--feature-extractor", "tests.fake_extractor:build", "-n", "4", "--device", "cpu")
    assert_usage_error(invoke(runner, *args), "'someone/remote-model' is not on this machine", "--allow-download")
    assert {kw["local_files_only"] for _, kw in fake_transformers} == {True}
    fake_transformers.clear()
    assert_usage_error(invoke(runner, *args, "--allow-download"), "cannot load the text encoder 'someone/remote-model'")
    assert fake_transformers[0][1] == {"local_files_only": False, "trust_remote_code": False}


def test_sample_and_interpolate_of_such_a_checkpoint_stay_local(hf_checkpoint, runner, fake_transformers, tmp_path):
    assert_usage_error(invoke(runner, "sample", hf_checkpoint, "--prompt", "a red circle", "-n", "2",
                              "--out", tmp_path / "s"), "'someone/remote-model' is not on this machine")
    assert_usage_error(invoke(runner, "interpolate", hf_checkpoint, "--prompts", "a red circle", "a blue square",
                              "--frames", "2", "--out", tmp_path / "w.gif"), "not on this machine")
    assert fake_transformers and {kw["local_files_only"] for _, kw in fake_transformers} == {True}
    fake_transformers.clear()  # the user's flag is the consent
    assert_usage_error(invoke(runner, "sample", hf_checkpoint, "--prompt", "a red circle", "-n", "2", "--allow-download",
                              "--out", tmp_path / "s2"), "cannot load the text encoder 'someone/remote-model'")
    assert_usage_error(invoke(runner, "interpolate", hf_checkpoint, "--prompts", "a red circle", "a blue square",
                              "--frames", "2", "--allow-download", "--out", tmp_path / "w2.gif"), "cannot load")
    assert {kw["local_files_only"] for _, kw in fake_transformers} == {False}


def test_resuming_a_run_that_names_an_hf_model_stays_local(hf_checkpoint, runner, fake_transformers):
    run = hf_checkpoint.parent.parent
    args = ("train", "--out", run, "--resume", "--steps", "2", "--no-progress", "--device", "cpu")
    assert_usage_error(invoke(runner, *args), "'someone/remote-model' is not on this machine", "--allow-download")
    assert fake_transformers and {kw["local_files_only"] for _, kw in fake_transformers} == {True}
    fake_transformers.clear()
    assert_usage_error(invoke(runner, *args, "--allow-download"), "cannot load the text encoder 'someone/remote-model'")
    assert {kw["local_files_only"] for _, kw in fake_transformers} == {False}


# ------------------------------------------------------------------ (11) no tracebacks: extractors and --json


@pytest.fixture
def bad_extractors(tmp_path, monkeypatch):
    """A user module of broken extractors in the working directory; returns its name."""
    monkeypatch.chdir(tmp_path)
    name = f"bad_fx_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "import numpy as np\n"
        "import torch\n"
        "def nan():\n"
        "    return lambda x: torch.full((x.shape[0], 4), float('nan'))\n"
        "def flat():\n"
        "    return lambda x: x.float().mean(dim=(1, 2, 3))  # [N], not [N, D]\n"
        "def extra_row():\n"
        "    return lambda x: torch.zeros(x.shape[0] + 1, 4)\n"
        "def ints():\n"
        "    return lambda x: torch.zeros(x.shape[0], 4, dtype=torch.int64)\n"
        "def a_list():\n"
        "    return lambda x: [[0.0] * 4] * x.shape[0]\n"
        "def raises():\n"
        "    def f(x):\n"
        "        raise RuntimeError('CUDA out of memory')\n"
        "    return f\n"
        "def numpy_ok():\n"
        "    return lambda x: x.double().mean(dim=(2, 3)).numpy()  # [N, 3] float64 ndarray: accepted\n"
        "def bad_probs():\n"
        "    class F:\n"
        "        def __call__(self, x):\n"
        "            return x.double().mean(dim=(2, 3))\n"
        "        def probs(self, x):\n"
        "            return torch.full((x.shape[0], 3), float('inf'))\n"
        "    return F()\n"
    )
    yield name
    sys.modules.pop(name, None)


@pytest.mark.parametrize("fn, fragment", [
    ("nan", "returned 16 NaN/inf values among features [4, 4] for 4 images"),
    ("flat", "returned features of shape [4] for 4 images; expected [4, D]"),
    ("extra_row", "returned features of shape [5, 4] for 4 images"),
    ("ints", "returned features of dtype torch.int64; expected floating point"),
    ("a_list", "returned list as features, not a tensor [4, D]"),
    ("raises", "failed computing features for 4 images (RuntimeError: CUDA out of memory)"),
])
def test_a_broken_feature_extractor_is_one_error_line(runner, tmp_path, bad_extractors, fn, fragment):
    real, fake = _folders(tmp_path)
    spec = f"{bad_extractors}:{fn}"
    result = invoke(runner, "eval", "--real", real, "--fake", fake, "--fid", "--device", "cpu",
                    "--feature-extractor", spec)
    assert_usage_error(result, f"feature extractor '{spec}'", fragment, "module:function")


def test_extractor_outputs_accepted_and_checked_for_is(runner, tmp_path, bad_extractors):
    real, fake = _folders(tmp_path)
    ok = invoke(runner, "eval", "--real", real, "--fake", fake, "--fid", "--device", "cpu", "--json", "-",
                "--feature-extractor", f"{bad_extractors}:numpy_ok")
    assert ok.exit_code == 0, ok.output
    # per-channel means: real noise vs flat grey 128 -> a finite, positive FID
    assert json.loads(ok.stdout)["metrics"]["fid"] > 0
    result = invoke(runner, "eval", "--real", real, "--fake", fake, "--is", "--device", "cpu",
                    "--feature-extractor", f"{bad_extractors}:bad_probs")
    assert_usage_error(result, "NaN/inf values among probs")


def test_features_of_another_dimension_than_the_reference_are_an_error():
    with pytest.raises(CgantoolError, match="reference features have 3 dimensions and the generated ones 4"):
        evaluate.compute_metrics(np.zeros((5, 3)), np.zeros((5, 4)), ("fid",), None, seed=0)


def test_a_damaged_reference_feature_cache_is_recomputed(tmp_path, capsys):
    from cgantool.config import DataConfig
    from cgantool.data import load_dataset

    dataset = load_dataset(DataConfig(source="shapes", resolution=16, num_images=8))
    opts = evaluate.EvalOptions(num_samples=8, batch_size=4, feature_extractor="tests.fake_extractor:build")
    extractor = evaluate.Extractor(opts)
    first = evaluate.real_features(dataset, extractor, opts)["features"]
    (cached,) = (tmp_path / "cache" / "stats").glob("real-*.npz")
    cached.write_bytes(b"truncated")
    again = evaluate.real_features(dataset, extractor, opts)["features"]
    np.testing.assert_array_equal(again, first)
    assert "recomputing the reference features" in capsys.readouterr().err


@pytest.fixture
def no_compute(monkeypatch):
    """Records whether eval reached the metric computation."""
    calls = []
    monkeypatch.setattr(evaluate, "evaluate_folders", lambda *a, **k: calls.append(a) or {})
    monkeypatch.setattr(evaluate, "evaluate_generator", lambda *a, **k: calls.append(a) or {})
    return calls


@pytest.mark.parametrize("target, fragment", [
    ("{tmp}", "is a directory"),
    ("{tmp}/a-file.txt/eval.json", "a-file.txt is not a directory"),
    ("{tmp}/a-file.txt/deeper/eval.json", "a-file.txt is not a directory"),
    ("/dev/null", "is not a regular file"),
])
def test_an_unwritable_json_path_fails_before_any_compute(runner, tmp_path, no_compute, target, fragment):
    (tmp_path / "a-file.txt").write_text("a regular file\n")
    (tmp_path / "imgs").mkdir()
    real, fake = _folders(tmp_path / "imgs")
    result = invoke(runner, "eval", "--real", real, "--fake", fake, "--fid", "--device", "cpu",
                    "--feature-extractor", "tests.fake_extractor:build", "--json", target.format(tmp=tmp_path))
    assert_usage_error(result, "--json", fragment, "--json - for stdout")
    assert no_compute == []
    assert (tmp_path / "a-file.txt").read_text() == "a regular file\n"


def test_a_json_path_in_a_new_folder_is_written(runner, tmp_path):
    real, fake = _folders(tmp_path)
    out = tmp_path / "new" / "dir" / "eval.json"
    result = invoke(runner, "eval", "--real", real, "--fake", fake, "--fid", "--device", "cpu",
                    "--feature-extractor", "tests.fake_extractor:build", "--json", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["num_fake"] == 4
    assert sorted(p.name for p in out.parent.iterdir()) == ["eval.json"]  # no probe file left behind


def test_the_feature_extractor_may_be_the_function_a_module_or_a_factory(runner, tmp_path, monkeypatch):
    """README's usage (a function of the image batch) and the factory form both work, and give the same numbers."""
    monkeypatch.chdir(tmp_path)
    name = f"fx_forms_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "import torch\n"
        "def features(images):\n"
        "    return images.float().mean((2, 3))\n"
        "def factory():\n"
        "    return features\n"
        "class Net(torch.nn.Module):\n"
        "    def forward(self, images):\n"
        "        return images.float().mean((2, 3))\n"
        "net = Net()\n"
    )
    results = {}
    for form in ("features", "factory", "Net", "net"):
        (tmp_path / form).mkdir()
        out = tmp_path / f"{form}.json"
        result = _eval_folders(runner, tmp_path / form, "--feature-extractor", f"{name}:{form}", "--json", out)
        assert result.exit_code == 0, (form, result.output)
        results[form] = json.loads(out.read_text())["metrics"]["kid"]
    assert len(set(results.values())) == 1, results
