"""The Inception weights' offline story, the wrapper's preprocessing (scripted stand-in), pluggable extractors.

Nothing here touches the network beyond 127.0.0.1; no real weights are needed.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cgantool.errors import CgantoolError, OfflineError
from cgantool.eval import weights as weights_module
from cgantool.eval.inception import (
    InceptionFeatures,
    download_file,
    load_feature_extractor,
    resolve_inception_weights,
)

CLOSED_PORT_URL = "http://127.0.0.1:9/x.pt"  # the discard port: nothing listens there


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A fresh cache dir per test, no env override, and no clean-fid copy in the real /tmp."""
    monkeypatch.setenv("CGANTOOL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CGANTOOL_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(weights_module, "CLEANFID_PATH", tmp_path / "cleanfid-tmp" / weights_module.FILENAME)


def _leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*part")) if folder.exists() else []


def _zip_bytes(size: int) -> bytes:
    """A valid zip archive of at least ``size`` bytes (TorchScript files are zip archives)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("payload", b"\0" * size)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------- resolution order


def test_explicit_path_must_exist(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(CgantoolError, match="not found at") as e:
        resolve_inception_weights(str(missing))
    assert str(missing) in e.value.message and weights_module.URL in e.value.hint
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")  # an explicit choice is taken as is, whatever its size
    assert resolve_inception_weights(str(weights)) == weights


def test_env_var_points_at_the_weights(tmp_path, monkeypatch):
    weights = tmp_path / "env.pt"
    weights.write_bytes(b"x")
    monkeypatch.setenv("CGANTOOL_INCEPTION_WEIGHTS", str(weights))
    assert resolve_inception_weights() == weights
    explicit = tmp_path / "explicit.pt"
    explicit.write_bytes(b"y")
    assert resolve_inception_weights(explicit) == explicit  # the explicit path wins over the env var
    monkeypatch.setenv("CGANTOOL_INCEPTION_WEIGHTS", str(tmp_path / "missing.pt"))
    with pytest.raises(CgantoolError, match="missing file"):
        resolve_inception_weights()


def _trust(monkeypatch, path: Path) -> None:
    """Make ``path`` 'clean-fid's file' for this test: the expected sha256 becomes the file's."""
    monkeypatch.setattr(weights_module, "SHA256", weights_module.sha256_file(path))


def test_cache_then_a_verified_cleanfid_copy_adopted_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_module, "MIN_BYTES", 100)
    monkeypatch.setattr(weights_module, "URL", CLOSED_PORT_URL)
    cleanfid_copy = weights_module.CLEANFID_PATH
    cleanfid_copy.parent.mkdir(parents=True)
    cleanfid_copy.write_bytes(b"\1" * 150)
    _trust(monkeypatch, cleanfid_copy)
    # clean-fid's /tmp copy is taken only as a verified copy inside cgantool's own cache dir
    cached = weights_module.cache_path()
    assert cached == tmp_path / "cache" / weights_module.FILENAME
    assert resolve_inception_weights(download=False) == cached and cached.read_bytes() == b"\1" * 150
    assert _leftovers(cached.parent) == []
    cleanfid_copy.unlink()
    assert resolve_inception_weights(download=False) == cached  # the cache comes first (checked when loaded)


@pytest.mark.parametrize("size", [150, 99, 200_000])
def test_an_unverified_file_in_cleanfids_tmp_location_is_never_used(tmp_path, monkeypatch, capsys, size):
    # a planted file in a world-writable directory: right name, wrong content (or a size it cannot have)
    monkeypatch.setattr(weights_module, "MIN_BYTES", 100)
    monkeypatch.setattr(weights_module, "MAX_BYTES", 100_000)
    monkeypatch.setattr(weights_module, "URL", CLOSED_PORT_URL)
    weights_module.CLEANFID_PATH.parent.mkdir(parents=True)
    weights_module.CLEANFID_PATH.write_bytes(b"\2" * size)
    with pytest.raises(OfflineError, match="not on this machine"):
        resolve_inception_weights(download=False)
    assert f"warning: ignoring {weights_module.CLEANFID_PATH}" in capsys.readouterr().err
    assert not weights_module.cache_path().exists() and _leftovers(weights_module.cache_path().parent) == []
    with pytest.raises(OfflineError, match="could not download"):
        resolve_inception_weights(timeout=2.0)


# ------------------------------------------------------------------------------------------------- downloads


def test_closed_port_fails_fast_with_the_url_and_the_cache_path_in_the_hint(monkeypatch):
    monkeypatch.setattr(weights_module, "URL", CLOSED_PORT_URL)
    start = time.monotonic()
    with pytest.raises(OfflineError) as e:
        resolve_inception_weights(timeout=2.0)
    assert time.monotonic() - start < 5
    assert e.value.message.startswith("could not download the Inception weights (")
    assert CLOSED_PORT_URL in e.value.hint and str(weights_module.cache_path()) in e.value.hint
    assert "--inception-weights PATH" in e.value.hint and "CGANTOOL_INCEPTION_WEIGHTS" in e.value.hint
    assert _leftovers(weights_module.cache_path().parent) == []


def test_a_server_that_never_answers_times_out():
    # a black-holed network: the connection is accepted (by the kernel's backlog) and no byte ever comes back
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    url = f"http://127.0.0.1:{server.getsockname()[1]}/{weights_module.FILENAME}"
    try:
        start = time.monotonic()
        with pytest.raises(OfflineError) as e:
            resolve_inception_weights(timeout=1.0, url=url)
        assert time.monotonic() - start < 5
        assert "no response for 1 s" in e.value.message or "timed out" in e.value.message
        assert weights_module.URL in e.value.hint and str(weights_module.cache_path()) in e.value.hint
        assert _leftovers(weights_module.cache_path().parent) == []
    finally:
        server.close()


def test_a_name_lookup_that_hangs_is_cut_off_by_the_watchdog(monkeypatch):
    # urllib's timeout does not cover DNS; the watchdog does
    def hanging_getaddrinfo(*args, **kwargs):
        time.sleep(5)
        raise socket.gaierror("unreachable")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_getaddrinfo)
    start = time.monotonic()
    with pytest.raises(OfflineError, match="no response for 1 s"):
        resolve_inception_weights(timeout=1.0, url="http://weights.invalid/x.pt")
    assert time.monotonic() - start < 4


def _trickle_server(stop: threading.Event) -> tuple[socket.socket, str]:
    """Answers with headers promising 1000 bytes, then sends one byte every 0.2 s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n")
            while not stop.is_set():
                try:
                    conn.sendall(b"x")
                except OSError:
                    return
                time.sleep(0.2)

    threading.Thread(target=serve, daemon=True).start()
    return server, f"http://127.0.0.1:{server.getsockname()[1]}/slow.pt"


def test_a_trickling_transfer_hits_the_whole_transfer_deadline(tmp_path):
    stop = threading.Event()
    server, url = _trickle_server(stop)
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="took longer than 1 s"):
            download_file(url, tmp_path / "slow.pt", timeout=1.0, max_seconds=1.0)
        assert time.monotonic() - start < 3
        assert not (tmp_path / "slow.pt").exists() and _leftovers(tmp_path) == []
    finally:
        stop.set()
        server.close()


class _Server:
    """A local HTTP server whose GET answers ``body`` with a Content-Length of ``claimed`` bytes."""

    def __init__(self, body: bytes, claimed: int | None = None):
        outer = self
        self.body, self.claimed, self.hits = body, len(body) if claimed is None else claimed, 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", str(outer.claimed))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):  # keep the test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{weights_module.FILENAME}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_succeeds_atomically_and_is_cached(monkeypatch):
    body = _zip_bytes(5000)
    monkeypatch.setattr(weights_module, "SHA256", hashlib.sha256(body).hexdigest())
    server = _Server(body)
    monkeypatch.setattr(weights_module, "MIN_BYTES", 4000)
    monkeypatch.setattr(weights_module, "URL", server.url)
    try:
        path = resolve_inception_weights(timeout=5.0)
    finally:
        server.close()
    assert path == weights_module.cache_path() and path.read_bytes() == body
    assert _leftovers(path.parent) == []
    assert resolve_inception_weights(timeout=5.0) == path and server.hits == 1  # second call: no network


@pytest.mark.parametrize("body, claimed, reason", [
    (_zip_bytes(100)[:150], 5000, "incomplete transfer: 150 of 5000 bytes"),  # connection closed early
    (b"<html>not found</html>", None, "got 22 bytes, expected at least 100"),  # e.g. a proxy's error page
    (b"\0" * 300, None, "not a TorchScript archive"),
])
def test_bad_downloads_are_rejected(tmp_path, body, claimed, reason):
    server = _Server(body, claimed)
    try:
        with pytest.raises(OSError, match=reason):
            download_file(server.url, tmp_path / "w.pt", timeout=5.0, max_seconds=30.0, min_bytes=100)
    finally:
        server.close()
    assert not (tmp_path / "w.pt").exists() and _leftovers(tmp_path) == []


# ------------------------------------------------------------------------------- the wrapper, with a stand-in


class _Layers(nn.Module):
    """Stand-in for the network body: normalised [B, 3, 299, 299] → [B, 2048, 1, 1] (4x4 pooling + linear)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(48, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.adaptive_avg_pool2d(x, 4).flatten(1)).reshape(x.shape[0], 2048, 1, 1)


class _StandIn(nn.Module):
    """The interface of clean-fid's inception-2015-12-05.pt: ``layers``, ``output`` (2048 → 1008, with a bias),
    and forward(img in [0, 255], return_features, use_fp16, no_output_bias) with a TF-style resize inside."""

    def __init__(self):
        super().__init__()
        self.layers = _Layers()
        self.output = nn.Linear(2048, 1008)
        nn.init.normal_(self.output.bias, std=3.0)  # a bias large enough that dropping it shows

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        b, c, h, w = img.shape
        x = img.to(torch.float32)
        theta = torch.eye(2, 3)
        theta[0, 2] += theta[0, 0] / w - theta[0, 0] / 299
        theta[1, 2] += theta[1, 1] / h - theta[1, 1] / 299
        grid = F.affine_grid(theta.unsqueeze(0).repeat(b, 1, 1), [b, c, 299, 299], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        feats = self.layers((x - 128) / 128).reshape(b, 2048)
        if return_features:
            return feats
        logits = F.linear(feats, self.output.weight) if no_output_bias else self.output(feats)
        return F.softmax(logits, dim=1)


class _StandInWithoutOutput(nn.Module):
    """Like :class:`_StandIn` but without an ``output`` attribute (its head is a plain buffer)."""

    def __init__(self):
        super().__init__()
        self.layers = _Layers()
        self.register_buffer("head", torch.randn(1008, 2048) * 0.05)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        x = F.interpolate(img.to(torch.float32), size=(299, 299), mode="bilinear", align_corners=False)
        feats = self.layers((x - 128) / 128).reshape(img.shape[0], 2048)
        return feats if return_features else F.softmax(feats @ self.head.t(), dim=1)


def _save(module: nn.Module, folder: Path) -> Path:
    torch.manual_seed(0)
    path = folder / weights_module.FILENAME
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def _load(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path)).eval()


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """The stand-in, 'verified' (the expected sha256 patched to its own) so the wrapper loads it without the flag."""
    torch.manual_seed(0)
    path = _save(_StandIn(), tmp_path)
    _trust(monkeypatch, path)
    return path


@pytest.fixture
def images():
    return torch.randint(0, 256, (3, 3, 20, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def _cleanfid_features(weights: Path, images: torch.Tensor, mode: str) -> torch.Tensor:
    """clean-fid's own path: its resizer per image (HWC uint8 → float32), then its InceptionV3W wrapper."""
    from cleanfid.inception_torchscript import InceptionV3W
    from cleanfid.resize import build_resizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = InceptionV3W(str(weights.parent), download=False, resize_inside=mode == "legacy_tensorflow")
    resize = build_resizer(mode)
    batch = torch.stack([torch.tensor(resize(img.permute(1, 2, 0).numpy()).transpose((2, 0, 1))) for img in images])
    with torch.no_grad():
        return model(batch)


@pytest.mark.parametrize("mode", ["clean", "legacy_tensorflow"])
def test_features_match_clean_fid(weights, images, mode):
    feats = InceptionFeatures(weights, mode=mode)(images)
    assert feats.shape == (3, 2048) and feats.dtype == torch.float32
    torch.testing.assert_close(feats, _cleanfid_features(weights, images, mode), rtol=0, atol=1e-5)


def test_clean_and_tensorflow_resizes_differ(weights, images):
    # a guard on the test above: the two modes' references are not the same numbers
    clean = _cleanfid_features(weights, images, "clean")
    tf = _cleanfid_features(weights, images, "legacy_tensorflow")
    assert (clean - tf).abs().max() > 1e-3


def test_legacy_pytorch_uses_bilinear_interpolate_and_pytorch_fid_scaling(weights, images):
    layers = _load(weights).layers
    x = F.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False).clamp(0, 255)
    with torch.no_grad():
        expected = layers(x / 255 * 2 - 1).reshape(3, 2048)  # pytorch-fid: x / 255, then 2x - 1
    torch.testing.assert_close(InceptionFeatures(weights, mode="legacy_pytorch")(images), expected, rtol=0, atol=1e-5)


def test_probs_are_the_bias_free_head_as_stylegan2_ada(weights, images):
    base = _load(weights)
    fx = InceptionFeatures(weights, mode="legacy_tensorflow")
    with torch.no_grad():
        # StyleGAN2-ADA's IS: detector(uint8 images, no_output_bias=True) → softmax over 1008 classes
        expected = base(images, no_output_bias=True)
        with_bias = base(images)
    feats, logits = fx.features_and_logits(images)
    torch.testing.assert_close(fx.probs(images), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(logits, feats @ base.output.weight.t(), rtol=0, atol=1e-5)
    assert (fx.probs(images) - with_bias).abs().max() > 1e-3  # dropping the bias matters for this stand-in


def test_probs_without_an_output_attribute_fall_back_to_the_module_interface(tmp_path, images):
    torch.manual_seed(0)
    path = _save(_StandInWithoutOutput(), tmp_path)
    base = _load(path)
    fx = InceptionFeatures(path, mode="clean", unverified=True)
    with torch.no_grad():
        resized = fx._resize(images)  # clean-fid's resize, [0, 255]; the module resizes 299 → 299 and normalises
        expected = base(resized, no_output_bias=True)
    torch.testing.assert_close(fx.probs(images), expected, rtol=0, atol=1e-6)


def test_wrapper_errors(tmp_path, weights, images):
    with pytest.raises(CgantoolError, match="unknown Inception mode 'fancy'"):
        InceptionFeatures(weights, mode="fancy")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not torchscript")
    with pytest.raises(CgantoolError, match="not clean-fid's inception-2015-12-05.pt"):
        InceptionFeatures(junk)
    with pytest.raises(CgantoolError, match="cannot load the Inception weights") as e:
        InceptionFeatures(junk, unverified=True)
    assert weights_module.URL in e.value.hint
    with pytest.raises(ValueError, match="uint8"):
        InceptionFeatures(weights)(images.float())


def test_building_the_legacy_pytorch_resizer_leaves_warning_filters_alone(weights):
    # clean-fid's PyTorch resizer calls warnings.filterwarnings("ignore") when built
    before = list(warnings.filters)
    InceptionFeatures(weights, mode="legacy_pytorch")
    assert warnings.filters == before


# ------------------------------------------------------------------------------------- pluggable extractors


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Writes a module into the working directory (as a user would) and returns its unique name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    name = f"user_fx_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "import torch\n"
        "def build():\n"
        "    return lambda images: images.double().mean(dim=(2, 3))  # uint8 [B, 3, H, W] -> [B, 3]\n"
        "def not_callable():\n"
        "    return 42\n"
        "def broken():\n"
        "    raise RuntimeError('no GPU here')\n"
    )
    (tmp_path / f"{name}_bad.py").write_text("raise RuntimeError('boom at import')\n")
    yield name
    for mod in (name, f"{name}_bad"):
        sys.modules.pop(mod, None)


def test_load_feature_extractor_from_the_working_directory(user_module):
    fx = load_feature_extractor(f"{user_module}:build")
    images = torch.stack([torch.full((3, 4, 4), v, dtype=torch.uint8) for v in (0, 10, 255)])
    # per-channel means of constant images are the constants
    torch.testing.assert_close(fx(images), torch.tensor([[0.0] * 3, [10.0] * 3, [255.0] * 3], dtype=torch.float64))


@pytest.mark.parametrize("spec, message", [
    ("no_colon", "expects module:function"),
    ("module_only:", "expects module:function"),
    (":function_only", "expects module:function"),
    ("cgantool_no_such_module_xyz:build", "cannot import feature extractor module 'cgantool_no_such_module_xyz'"),
    ("{m}_bad:build", "boom at import"),
    ("{m}:missing", "has no function 'missing'"),
    ("{m}:not_callable", "returned 'int', not a callable"),
    ("{m}:broken", "no GPU here"),
])
def test_load_feature_extractor_errors(user_module, spec, message):
    with pytest.raises(CgantoolError, match=message) as e:
        load_feature_extractor(spec.format(m=user_module))
    assert "module:function" in e.value.hint
