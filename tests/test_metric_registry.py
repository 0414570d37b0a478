"""The metrics registry: a metric registered from this file alone is computed by ``evaluate`` and ``eval --json``;
``--metrics`` beside the flags; unknown names refused by the CLI and by the config; ``evaluate_checkpoint``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cgantool.config import validate_config
from cgantool.errors import CgantoolError, ConfigError, GateFailed
from cgantool.eval.evaluate import compute_metrics, evaluate_checkpoint
from cgantool.eval.registry import METRICS, MetricInputs, metric_names, register_metric
from tests.conftest import invoke
from tests.test_cli import assert_usage_error

FX = "tests.fake_extractor:build"
PROBE_KEYS = {"attribute_accuracy", "shape_accuracy", "color_accuracy", "attribute_accuracy_real"}  # auto on shapes


@pytest.fixture
def toy():
    """A metric defined and registered here, needing the fakes' probs and images besides the features."""

    @register_metric("toy_gap", needs=("probs", "images"), description="distance of the feature means")
    def _toy(x: MetricInputs) -> dict[str, float]:
        return {"toy_gap": float(np.linalg.norm(x.real.mean(0) - x.fake.mean(0))), "toy_fakes": len(x.fake),
                "toy_probs": len(x.fake_probs), "toy_images": len(x.fake_images)}

    yield "toy_gap"
    METRICS.unregister("toy_gap")


def _ckpt(run):
    return run / "checkpoints" / "last.safetensors"


def _cli_json(runner, *args):
    result = invoke(runner, "eval", *args, "--feature-extractor", FX, "--device", "cpu", "--json", "-")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_metric_registered_in_a_test_file_reaches_evaluate_and_eval_json(tiny_run, runner, toy):
    assert toy in metric_names()
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(40, 8)), rng.normal(1.0, size=(30, 8))
    assert compute_metrics(real, fake, (toy,), None, seed=0) == {}  # bare features: no probs, no images for it

    py = evaluate_checkpoint(_ckpt(tiny_run), metrics=[toy], num_samples=30, batch_size=16, feature_extractor=FX,
                             device="cpu")["metrics"]
    assert py.keys() - PROBE_KEYS == {"toy_gap", "toy_fakes", "toy_probs", "toy_images"}  # no fid, no kid
    assert py["toy_fakes"] == py["toy_probs"] == py["toy_images"] == 30 and py["toy_gap"] > 0
    cli = _cli_json(runner, _ckpt(tiny_run), "--metrics", toy, "-n", "30", "-b", "16")["metrics"]
    assert cli == py
    both = _cli_json(runner, _ckpt(tiny_run), "--metrics", f"{toy},fid", "-n", "30")["metrics"]
    assert {"fid", "toy_gap"} <= both.keys() and "kid" not in both
    assert validate_config({"eval": {"metrics": ["fid", toy]}}).eval.metrics == ["fid", toy]


def test_metrics_see_the_right_inputs():
    seen = {}

    @register_metric("toy_inputs", description="records what it is given")
    def _record(x: MetricInputs) -> dict[str, float]:
        seen.update(real=x.real, fake=x.fake, seed=x.seed)
        return {"toy_mean_gap": float(np.abs(x.real.mean() - x.fake.mean()))}

    try:
        real, fake = np.zeros((6, 3)), np.full((5, 3), 2.0)
        out = compute_metrics(real, fake, ("toy_inputs", "fid"), None, seed=7)
        assert out["toy_mean_gap"] == 2.0 and seen["real"] is real and seen["fake"] is fake and seen["seed"] == 7
        assert list(out) == ["fid", "toy_mean_gap"]  # registration order: the built-ins first
        assert out["fid"] == pytest.approx(12.0)  # ||0 - 2||^2 over 3 dims, both covariances 0
    finally:
        METRICS.unregister("toy_inputs")


def test_register_metric_refuses_what_could_not_work():
    with pytest.raises(ValueError, match="lowercase"):
        register_metric("Two Words")
    with pytest.raises(ValueError, match="a metric may need"):
        register_metric("toy_x", needs=("captions",))
    with pytest.raises(ValueError, match="registered twice"):
        register_metric("fid")(lambda x: {})
    assert metric_names().count("fid") == 1


@pytest.mark.parametrize("values, fragment", [
    ({"fid": 1.0}, "returns 'fid', which another metric already gave"),
    ({"toy_bad": "high"}, "returned a non-number for 'toy_bad'"),
    ([1.0], "returned list, not a dict"),
])
def test_a_metric_returning_something_unusable_is_one_error(values, fragment):
    register_metric("toy_bad")(lambda x: values)
    try:
        with pytest.raises(CgantoolError, match="metric 'toy_bad'") as e:
            compute_metrics(np.zeros((4, 2)), np.ones((4, 2)), ("fid", "toy_bad"), None, seed=0)
        assert fragment in e.value.message
    finally:
        METRICS.unregister("toy_bad")


def test_metrics_flag_is_the_flags_by_name(tiny_run, runner):
    by_name = _cli_json(runner, _ckpt(tiny_run), "--metrics", "fid,kid", "-n", "30")
    by_flag = _cli_json(runner, _ckpt(tiny_run), "--fid", "--kid", "-n", "30")
    assert by_name["metrics"].keys() - PROBE_KEYS == {"fid", "kid", "kid_std"}
    assert by_name["metrics"] == by_flag["metrics"]
    union = _cli_json(runner, _ckpt(tiny_run), "--fid", "--metrics", " prdc, ,fid_per_class", "-n", "30")["metrics"]
    assert union.keys() - PROBE_KEYS == {"fid", "precision", "recall", "density", "coverage", "fid_per_class",
                                         "fid_intra_class_mean"}
    assert union["fid"] == by_flag["metrics"]["fid"]


def test_an_unknown_metric_name_is_one_error_line(runner, tmp_path):
    missing = tmp_path / "never-read.safetensors"  # names are checked before the checkpoint is opened
    result = invoke(runner, "eval", missing, "--metrics", "nope")
    assert_usage_error(result, "unknown metric 'nope' in --metrics", "valid names:", "fid", "prdc")
    assert "checkpoint not found" not in result.output
    assert_usage_error(invoke(runner, "eval", missing, "--fid", "--metrics", "fid,kidd"), "did you mean 'kid'?")
    with pytest.raises(ConfigError, match="unknown metric 'fdi' in metrics") as e:
        evaluate_checkpoint(missing, metrics=["fdi"])
    assert "did you mean 'fid'?" in e.value.hint


def test_the_config_refuses_an_unknown_metric(runner, tmp_path):
    with pytest.raises(ConfigError, match=r"'eval\.metrics'.*unknown metric 'nope'") as e:
        validate_config({"eval": {"metrics": ["fid", "nope"]}})
    assert "valid names:" in e.value.hint and "kid" in e.value.hint
    assert_usage_error(invoke(runner, "config", "show", "--set", "eval.metrics=['fdi']"),
                       "eval.metrics", "unknown metric 'fdi'", "did you mean 'fid'?")
    out = tmp_path / "run"
    result = invoke(runner, "train", "--data", "shapes:16", "--steps", "1", "--out", out, "--no-progress",
                    "--set", "eval.metrics=['kid', 'isc']")
    assert_usage_error(result, "eval.metrics", "unknown metric 'isc'", "did you mean 'is'?")
    assert not out.exists()


def test_evaluate_checkpoint_returns_what_eval_json_prints(tiny_run, runner):
    cli = _cli_json(runner, _ckpt(tiny_run), "--metrics", "fid,is", "--per-class", "-n", "40", "-b", "16",
                    "--seed", "3", "--no-ema")
    py = evaluate_checkpoint(_ckpt(tiny_run), metrics=("fid", "is"), per_class=True, num_samples=40, batch_size=16,
                             seed=3, ema=False, feature_extractor=FX, device="cpu")
    assert cli.pop("seconds") >= 0 and py.pop("seconds") >= 0
    assert json.loads(json.dumps(py)) == cli
    assert {"fid", "is", "is_std", "fid_per_class"} <= py["metrics"].keys() and "kid" not in py["metrics"]
    assert py["checkpoint"] == str(_ckpt(tiny_run)) and py["step"] == 8 and py["seed"] == 3 and py["ema"] is False


def test_a_missed_gate_is_a_cgantool_error_with_exit_code_1(tiny_run, runner):
    assert issubclass(GateFailed, CgantoolError) and GateFailed("x").exit_code == 1
    result = invoke(runner, "eval", _ckpt(tiny_run), "--metrics", "kid", "--max-fid", "0.0001", "-n", "30",
                    "--feature-extractor", FX, "--device", "cpu")
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "above --max-fid 0.0001" in errors[0]


def test_a_checkpoint_recording_a_plugin_metric_loads_where_the_plugin_is_not(runner, tmp_path, toy):
    from tests.conftest import TINY

    out = tmp_path / "run"
    result = invoke(runner, "train", "--data", "shapes:16", "--steps", "1", "--batch-size", "4", "--out", out,
                    "--no-progress", "--device", "cpu", *TINY, "--set", f"eval.metrics=['fid', '{toy}']")
    assert result.exit_code == 0, result.output
    METRICS.unregister(toy)  # a later process without the plugin
    try:
        from cgantool.checkpoint import load_checkpoint

        assert load_checkpoint(_ckpt(out)).config.eval.metrics == ["fid", toy]  # the record is kept as written
        sampled = invoke(runner, "sample", _ckpt(out), "-n", "2", "--out", tmp_path / "s", "--device", "cpu")
        assert sampled.exit_code == 0, sampled.output
        with pytest.raises(ConfigError, match=f"unknown metric '{toy}'"):  # a new run still needs it registered
            validate_config({"eval": {"metrics": [toy]}})
    finally:
        register_metric(toy, needs=("probs", "images"))(lambda x: {toy: 0.0})  # (the fixture unregisters it)
