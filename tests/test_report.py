"""`cgantool report` and `cgantool compare` on tiny runs, including damaged metrics files."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser

from PIL import Image

from cgantool.report import read_run, smooth
from tests.conftest import invoke
from tests.test_cli import assert_usage_error


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.imgs = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img" and dict(attrs)["src"].startswith("data:image/png;base64,"):
            self.imgs += 1


def test_report_html_and_pngs(tiny_run, runner, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    result = invoke(runner, "report", run, "--png")
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text()
    parser = _Collect()
    parser.feed(page)
    assert "h1" in parser.tags and "table" in parser.tags
    # losses + lr + speed figures, and the 2 sample grids (steps 4, 8) embedded
    assert parser.imgs == 5
    assert Image.open(run / "report" / "losses.png").size == (900, 360)
    assert Image.open(run / "report" / "lr.png").size == (640, 360)


def test_damaged_metrics_lines_are_noted_not_fatal(tiny_run, runner, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 10, "d/adv": 0.5\n')  # truncated by a crash
        f.write("not json\n")
    record = read_run(run)
    assert record.bad_lines == 2 and len(record.rows) == 4
    result = invoke(runner, "report", run)
    assert result.exit_code == 0 and "skipped 2 damaged line(s)" in result.output
    assert "2 damaged line(s)" in (run / "report.html").read_text()


def test_compare_two_runs(tiny_run, runner, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_run, a)
    shutil.copytree(tiny_run, b)
    rows = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    rows.append({"step": 8, "eval/fid": 12.5})
    (b / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (b / "config.toml").write_text((b / "config.toml").read_text().replace("batch_size = 8", "batch_size = 16"))
    result = invoke(runner, "compare", a, b, "--metric", "fid", "--plot", tmp_path / "fid.png")
    assert result.exit_code == 0, result.output
    assert "train.batch_size" in result.output and "12.5" in result.output
    assert Image.open(tmp_path / "fid.png").size == (640, 360)


def test_report_and_compare_bad_input(runner, tmp_path):
    assert_usage_error(invoke(runner, "report", tmp_path), "no metrics.jsonl")
    assert_usage_error(invoke(runner, "compare", tmp_path), "at least two runs")


def test_smoothing_is_debiased():
    assert smooth([4.0, 4.0, 4.0]) == [4.0, 4.0, 4.0]  # a constant stays constant from the first point
    s = smooth([0.0, 10.0], weight=0.5)
    assert s[0] == 0.0 and abs(s[1] - (0.5 * 10.0) / (1 - 0.25)) < 1e-12  # (0.5*0 + 0.5*10) / (1 - 0.5^2)


def test_tensorboard_logging_writes_scalars_and_grids(runner, tmp_path, monkeypatch):
    """TensorBoard is optional: a stand-in SummaryWriter records what the engine logs."""
    import sys
    import types

    from tests.conftest import TINY

    calls = []

    class Writer:
        def __init__(self, log_dir, purge_step=None):
            calls.append(("init", log_dir))

        def add_scalar(self, key, value, step):
            calls.append(("scalar", key, step))

        def add_image(self, key, image, step):
            calls.append(("image", key, tuple(image.shape), step))

        def close(self):
            calls.append(("close",))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    out = tmp_path / "tb"
    result = invoke(runner, "train", "--data", "shapes:16", "--steps", "4", "--batch-size", "4", "--out", out,
                    "--no-progress", *TINY, "--set", "train.tensorboard=true")
    assert result.exit_code == 0, result.output
    assert calls[0] == ("init", str(out / "tensorboard")) and calls[-1] == ("close",)
    assert ("scalar", "d/adv", 2) in calls and ("scalar", "g/adv", 4) in calls
    assert any(c[0] == "image" and c[1] == "samples" and c[3] == 4 for c in calls)


def test_tensorboard_missing_is_a_clear_error(runner, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    result = invoke(runner, "train", "--data", "shapes:16", "--steps", "1", "--out", tmp_path / "x", "--no-progress",
                    "--set", "train.tensorboard=true")
    assert_usage_error(result, "tensorboard package is not installed", "pip install")
