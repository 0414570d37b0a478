"""A checkpoint is untrusted input (issue 25): edited metadata cannot ask for gigabytes or hang `info`, broken or
renamed tensors, bad outputs and impossible counts are one `error:` line (exit 2) before any compute, and a
generator with non-finite weights is refused. Every case runs through the real CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.conftest import invoke
from tests.test_cli import assert_usage_error


def edited(src, dst, tensors=None, meta=None):
    """A copy of checkpoint ``src`` at ``dst`` with ``tensors(dict)`` / ``meta(dict)`` applied in place."""
    t = load_file(str(src))
    with safe_open(str(src), framework="pt") as f:
        m = dict(f.metadata())
    if tensors is not None:
        tensors(t)
    if meta is not None:
        meta(m)
    save_file(t, str(dst), metadata=m)
    return dst


def json_edit(key, fn):
    """A ``meta`` editor that applies ``fn`` to the JSON stored under metadata ``key``."""

    def apply(m):
        doc = json.loads(m[key])
        fn(doc)
        m[key] = json.dumps(doc)

    return apply


@pytest.fixture()
def ckpt(tiny_run):
    return tiny_run / "checkpoints" / "last.safetensors"


# ---------------------------------------------------------------------------------------------------------------
# (8) metadata cannot exhaust memory, hang, or drive the terminal


def _set_classes(n):
    def fn(info):
        info["num_classes"] = n
        info["class_names"] = [f"c{i}" for i in range(n)]

    return fn


@pytest.mark.parametrize("meta, fragment", [
    # z_dim 10^9: G.l1.weight would be [4 * 4 * 16, 10^9] floats = 64 GB; the file holds [256, 128]
    (json_edit("config", lambda c: c["model"].update(z_dim=10**9)), "G.l1.weight is [256, 128]"),
    # width 10^6: every conv would hold ~10^12 weights
    (json_edit("config", lambda c: c["model"].update(g_channels=10**6)), "G.l1.weight is [256, 128]"),
    # 200,000 classes (names to match, 2 MB of metadata): conditional BN embeddings [200000, 16], the file has [20, 16]
    (json_edit("data_info", _set_classes(200_000)), "the stored config builds [200000, 16]"),
    # 21 classes: one more embedding row than the tensors have
    (json_edit("data_info", _set_classes(21)), "is [20, 16], the stored config builds [21, 16]"),
])
def test_edited_sizes_are_checked_against_the_tensors_before_allocating(ckpt, runner, tmp_path, meta, fragment):
    import resource

    bad = edited(ckpt, tmp_path / "bad.safetensors", meta=meta)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    for args in (["sample", bad, "-n", "2", "--out", tmp_path / "s"],
                 ["interpolate", bad, "--out", tmp_path / "w.gif"]):
        assert_usage_error(invoke(runner, *args), "do not match", fragment)
    # the peak memory of this process grew by far less than the model the metadata describes (>= 64 GB)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 2 * 2**20
    assert not (tmp_path / "s").exists()


def test_huge_metadata_is_refused_unread(ckpt, runner, tmp_path):
    bad = edited(ckpt, tmp_path / "big.safetensors", meta=lambda m: m.update(junk="x" * (9 * 2**20)))
    for command in ("info", "sample"):
        assert_usage_error(invoke(runner, command, bad), "MB of metadata")


def test_info_prints_markup_and_escapes_from_the_file_literally(ckpt, runner, tmp_path):
    def names(info):
        info["class_names"][0] = "[/bold]red[link=x]\x1b[31mcircle"
        info["source"] = "[bold red]evil\x1b]0;title\x07\nsecond line"

    bad = edited(ckpt, tmp_path / "markup.safetensors", meta=json_edit("data_info", names))
    result = invoke(runner, "info", bad)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output  # no escape sequence reaches the terminal
    assert "[/bold]red[link=x]\\x1b[31mcircle" in result.output  # shown as text, not interpreted
    assert "[bold red]evil\\x1b]0;title\\x07\\nsecond line" in result.output  # one field stays on one line
    # a class named like a markup tag is still a class
    assert invoke(runner, "sample", bad, "-n", "1", "--class", "[/bold]red[link=x]\x1b[31mcircle",
                  "--out", tmp_path / "s").exit_code == 0


def test_info_cuts_a_flood_of_text_in_the_panel(ckpt, runner, tmp_path):
    bad = edited(ckpt, tmp_path / "long.safetensors", meta=lambda m: m.update(preset="p" * 100_000))
    result = invoke(runner, "info", bad)
    assert result.exit_code == 0, result.output
    assert "p" * 197 + "..." in result.output.replace("│", "").replace("\n", "").replace(" ", "")
    assert len(result.output) < 5000


# ---------------------------------------------------------------------------------------------------------------
# (9) counts: memory independent of N, documented bounds


def test_sample_count_bound_is_documented_and_enforced(ckpt, runner, tmp_path):
    assert "10,000,000" in invoke(runner, "sample", "--help").output
    assert_usage_error(invoke(runner, "sample", ckpt, "-n", "1000000000", "--out", tmp_path / "a"), "10,000,000")
    # --per-class M writes M x 20 classes: 600,000 x 20 = 12,000,000 > 10,000,000
    assert_usage_error(invoke(runner, "sample", ckpt, "--per-class", "600000", "--out", tmp_path / "b"), "12,000,000")
    assert_usage_error(invoke(runner, "sample", ckpt, "-b", "100000", "--out", tmp_path / "c"), "--batch-size")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_sample_streams_batches_and_the_grid_shows_the_first_images(ckpt, runner, tmp_path, monkeypatch):
    import cgantool.sampling as sampling

    sizes = []
    real_latents = sampling.latents

    def spy(seed, indices, z_dim, truncation=None):
        sizes.append(len(indices))
        return real_latents(seed, indices, z_dim, truncation)

    monkeypatch.setattr(sampling, "latents", spy)
    monkeypatch.setattr(sampling, "GRID_MAX_IMAGES", 10)
    result = invoke(runner, "sample", ckpt, "-n", "37", "-b", "8", "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert sizes == [8, 8, 8, 8, 5]  # z is drawn per batch, never for all 37 at once
    assert len(list((tmp_path / "s").glob("0*.png"))) == 37
    # the first 10 images in ceil(sqrt(10)) = 4 columns, 3 rows of 16 px shown 4x with 2 px padding
    assert Image.open(tmp_path / "s" / "grid.png").size == (2 + 4 * 66, 2 + 3 * 66)
    assert "the first 10" in result.output
    # streamed images equal one-batch images (image i depends on (seed, i) only)
    monkeypatch.undo()
    assert invoke(runner, "sample", ckpt, "-n", "37", "-b", "37", "--out", tmp_path / "t").exit_code == 0
    for i in (0, 36):
        a = np.asarray(Image.open(tmp_path / "s" / f"{i:04d}.png")).astype(int)
        b = np.asarray(Image.open(tmp_path / "t" / f"{i:04d}.png")).astype(int)
        assert np.abs(a - b).max() <= 1


def test_interpolate_frame_bound_is_documented_and_enforced(ckpt, runner, tmp_path):
    assert "10,000" in invoke(runner, "interpolate", "--help").output
    assert_usage_error(invoke(runner, "interpolate", ckpt, "--frames", "100000000", "--out", tmp_path / "w.gif"),
                       "100,000,001 frames", "10,000")
    # 3 seeds, 50 frames per segment: 2 x 50 + 1 = 101 frames x 100 rows = 10,100 > 10,000
    assert_usage_error(invoke(runner, "interpolate", ckpt, "--seeds", "1,2,3", "--frames", "50", "--rows", "100",
                              "--out", tmp_path / "w.gif"), "10,100 images")
    assert not (tmp_path / "w.gif").exists()


# ---------------------------------------------------------------------------------------------------------------
# (11) no tracebacks: broken tensors and metadata, bad --seeds, unwritable --out, damaged resume state


def _rename(t):
    t["G.l1.weights"] = t.pop("G.l1.weight")


def _drop(t):
    del t["G.c_out.bias"]


def _reshape(t):
    t["G.l1.weight"] = t["G.l1.weight"][:100].clone()


@pytest.mark.parametrize("tensors, fragment", [
    (_rename, "missing G.l1.weight; unexpected G.l1.weights"),
    (_drop, "missing G.c_out.bias"),
    (_reshape, "G.l1.weight is [100, 128], the stored config builds [256, 128]"),
])
def test_broken_generator_tensors_are_one_error_line(ckpt, runner, tmp_path, tensors, fragment):
    bad = edited(ckpt, tmp_path / "bad.safetensors", tensors=tensors)
    assert_usage_error(invoke(runner, "sample", bad, "-n", "2", "--out", tmp_path / "s"), fragment)
    assert_usage_error(invoke(runner, "interpolate", bad, "--out", tmp_path / "w.gif"), fragment)
    # eval checks its feature extractor first (offline: the weights), so give it one that loads
    assert_usage_error(invoke(runner, "eval", bad, "--fid", "--num-samples", "8", "--device", "cpu",
                              "--feature-extractor", "tests.fake_extractor:build"), fragment)


@pytest.mark.parametrize("meta, fragment", [
    (lambda m: m.update(format_version="abc"), "format_version ('abc')"),
    (lambda m: m.update(data_info='{"resolution": 16, "num_cl'), "damaged cgantool metadata"),
    (lambda m: m.update(data_info='[1, 2]'), "data_info is not a JSON object"),
    (lambda m: m.update(metrics="[" * 100_000 + "]" * 100_000), "damaged cgantool metadata"),  # RecursionError
    (json_edit("data_info", lambda d: d.update(resolution="16")), "data_info.resolution is '16'"),
    (json_edit("data_info", lambda d: d.update(num_classes=30)), "names 20 classes but data_info.num_classes is 30"),
    (json_edit("data_info", lambda d: d.pop("num_classes")), "data_info.num_classes is None"),
    (json_edit("data_info", lambda d: d.update(class_names="red_circle")), "class_names is not a list of strings"),
    (lambda m: m.update(step="-3"), "step is -3"),
    (lambda m: m.update(state="[]"), "state is not a JSON object"),
])
def test_damaged_metadata_is_one_error_line(ckpt, runner, tmp_path, meta, fragment):
    bad = edited(ckpt, tmp_path / "bad.safetensors", meta=meta)
    for args in (["info", bad], ["sample", bad, "--out", tmp_path / "s"], ["interpolate", bad, "--out", tmp_path / "w.gif"]):
        assert_usage_error(invoke(runner, *args), fragment)


def test_seeds_must_be_integers(ckpt, runner, tmp_path):
    assert_usage_error(invoke(runner, "interpolate", ckpt, "--seeds", "a,b", "--out", tmp_path / "w.gif"),
                       "--seeds takes comma-separated integers, not 'a'")
    assert_usage_error(invoke(runner, "interpolate", ckpt, "--seeds", "1, 2x", "--out", tmp_path / "w.gif"), "'2x'")


def test_bad_out_is_refused_before_the_generator_is_loaded(ckpt, runner, tmp_path, monkeypatch):
    import cgantool.engine.model as model

    def must_not_run(*args, **kwargs):
        raise AssertionError("the generator was loaded before --out was checked")

    monkeypatch.setattr(model, "load_generator", must_not_run)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    folder = tmp_path / "folder.gif"
    folder.mkdir()
    cases = [
        (["sample", ckpt, "--out", a_file], "is a file, not a folder"),
        (["sample", ckpt, "--out", a_file / "sub"], "is a file, not a folder"),
        (["sample", ckpt, "--out", a_file / "sub", "--force"], "is a file, not a folder"),
        (["interpolate", ckpt, "--out", a_file / "w.gif"], "is a file, not a folder"),
        (["interpolate", ckpt, "--out", a_file / "frames"], "is a file, not a folder"),
        (["interpolate", ckpt, "--out", a_file], "is a file, not a folder"),  # a folder of frames
        (["interpolate", ckpt, "--out", folder, "--force"], "is a folder"),
        (["interpolate", ckpt, "--out", tmp_path / "w.mp4"], "unsupported output"),
    ]
    for args, fragment in cases:
        assert_usage_error(invoke(runner, *args), fragment)
    assert a_file.read_text() == "x"


def _resume_case(name):
    def opt_shape(t):
        t["opt_G.state.0.exp_avg"] = torch.zeros(3)

    def opt_missing(t):
        for k in [k for k in t if k.startswith("opt_D.")]:
            del t[k]

    def opt_key(t):
        del t["opt_G.state.3.exp_avg_sq"]

    def rng_missing(t):
        del t["rng.noise"]

    def rng_size(t):
        t["rng.noise"] = t["rng.noise"][:100].clone()

    def d_shape(t):
        k = next(k for k in t if k.startswith("D.") and t[k].dim() == 4)
        t[k] = torch.zeros(1, 1, 1, 1)

    def state(key, value=None):
        def fn(s):
            if value is None:
                s.pop(key)
            else:
                s[key] = value

        return json_edit("state", fn)

    return {
        "opt_shape": (dict(tensors=opt_shape), "opt_G.state.0.exp_avg is [3]"),
        "opt_missing": (dict(tensors=opt_missing), "opt_D's state"),
        "opt_key": (dict(tensors=opt_key), "opt_G.state.3 lacks exp_avg_sq"),
        "rng_missing": (dict(tensors=rng_missing), "rng.noise) is missing"),
        "rng_size": (dict(tensors=rng_size), "rng.noise is torch.uint8 [100]"),
        "d_shape": (dict(tensors=d_shape), "the 'D' tensors do not match"),
        "position_missing": (dict(meta=state("data_position")), "state.data_position is None"),
        "position_text": (dict(meta=state("data_position", "64")), "state.data_position is '64'"),
        "groups_missing": (dict(meta=state("opt_G.param_groups")), "opt_G's parameter groups"),
        "groups_lr": (dict(meta=json_edit("state", lambda s: s["opt_D.param_groups"][0].update(lr="fast"))),
                      "opt_D hyper-parameter 'lr' is 'fast'"),
    }[name]


@pytest.mark.parametrize("case", ["opt_shape", "opt_missing", "opt_key", "rng_missing", "rng_size", "d_shape",
                                  "position_missing", "position_text", "groups_missing", "groups_lr"])
def test_damaged_resume_state_is_one_checkpoint_error(tiny_run, runner, tmp_path, case):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    last = run / "checkpoints" / "last.safetensors"
    edits, fragment = _resume_case(case)
    edited(tiny_run / "checkpoints" / "last.safetensors", tmp_path / "edited.safetensors", **edits)
    last.unlink()
    shutil.copyfile(tmp_path / "edited.safetensors", last)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    result = invoke(runner, "train", "--out", run, "--resume", "--steps", "12", "--no-progress", "--device", "cpu")
    assert_usage_error(result, "cannot be resumed" if case != "d_shape" else "do not match", fragment)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # nothing was trained or written


def test_intact_resume_still_works(tiny_run, runner, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    result = invoke(runner, "train", "--out", run, "--resume", "--steps", "12", "--no-progress", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (run / "checkpoints" / "step_0000012.safetensors").exists()


# ---------------------------------------------------------------------------------------------------------------
# (12) non-finite weights are an error; non-finite images from finite weights a warning


def test_nan_weights_are_refused(ckpt, runner, tmp_path):
    def poison(t):
        t["G.l1.weight"][0, 0] = float("nan")

    bad = edited(ckpt, tmp_path / "nan.safetensors", tensors=poison)
    assert_usage_error(invoke(runner, "sample", bad, "-n", "2", "--out", tmp_path / "s"), "NaN or inf", "G.l1.weight")
    assert_usage_error(invoke(runner, "interpolate", bad, "--out", tmp_path / "w.gif"), "NaN or inf")
    assert not (tmp_path / "s").exists() and not (tmp_path / "w.gif").exists()


def test_non_finite_images_give_one_warning(ckpt, runner, tmp_path):
    def overflow(t):  # finite weights whose products overflow: inf - inf = NaN inside G
        t["G.l1.weight"] = torch.full_like(t["G.l1.weight"], 3e38)

    bad = edited(ckpt, tmp_path / "huge.safetensors", tensors=overflow)
    result = invoke(runner, "sample", bad, "-n", "3", "-b", "2", "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == [warnings[0]] and "3 of 3 images" in warnings[0]
    result = invoke(runner, "interpolate", bad, "--frames", "2", "--out", tmp_path / "w.gif")
    assert result.exit_code == 0, result.output
    assert sum(line.startswith("warning:") for line in result.output.splitlines()) == 1
    # the intact checkpoint warns about nothing
    result = invoke(runner, "sample", ckpt, "-n", "3", "--out", tmp_path / "ok")
    assert result.exit_code == 0 and "warning:" not in result.output
