"""Nothing lost: what `train` may do to the user's files, through the real CLI.

`--force` moves only cgantool runs aside; SIGINT / SIGTERM / SIGHUP (and a second signal) leave a resumable
checkpoint; one writer per run; kill -9 leaves nothing a later start trusts or trips over; a failed save names
the last good checkpoint; resume never rewrites what ran and never imports code a run's files name.
Process and signal cases run `cgantool` in subprocesses with real signals.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import TINY, invoke
from tests.test_cli import assert_usage_error

CGANTOOL = [str(Path(sys.executable).with_name("cgantool"))]
BASE = ["--data", "shapes:16", "--batch-size", "4", "--no-progress", "--device", "cpu", *TINY,
        "--set", "optim.lr_decay=none"]


def _train(runner, out, steps=4, *extra):
    return invoke(runner, "train", *BASE, "--steps", str(steps), "--out", out, "--set", "train.checkpoint_every=2", *extra)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _last_step(run: Path) -> int:
    from cgantool.checkpoint import load_checkpoint

    return load_checkpoint(run / "checkpoints" / "last.safetensors").step


# ----------------------------------------------------------------------------------------------
# --force and existing directories


def test_force_refuses_a_folder_that_is_not_a_run(runner, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    Image.new("RGB", (8, 8)).save(notes / "photo.png")
    before = _files(notes)
    result = _train(runner, notes, 1, "--force")
    assert_usage_error(result, "not one", "nothing was touched")
    assert _files(notes) == before and list(tmp_path.iterdir()) == [notes]


def test_force_refuses_the_data_and_the_working_directory(runner, tmp_path, monkeypatch):
    # a run directory that also holds the training data (--out = --data's parent)
    run = tmp_path / "run"
    assert _train(runner, run, 2).exit_code == 0
    data = run / "images"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), (60 * i, 0, 0)).save(data / c / f"{i}.png")
    before = _files(run)
    result = invoke(runner, "train", "--data", data, "--steps", "1", "--out", run, "--force", "--no-progress", *TINY)
    assert_usage_error(result, "training data", "nothing was touched")
    assert _files(run) == before
    # the working directory (`--out .` inside a run)
    monkeypatch.chdir(run)
    result = _train(runner, Path("."), 1, "--force")
    assert_usage_error(result, "working directory")
    assert _files(run) == before


def test_force_moves_the_old_run_aside(runner, tmp_path):
    run = tmp_path / "run"
    assert _train(runner, run, 2).exit_code == 0
    before = _files(run)
    result = _train(runner, run, 4, "--force")
    assert result.exit_code == 0, result.output
    (aside,) = tmp_path.glob("run.old-*")
    assert _files(aside) == before  # every file of the old run, byte for byte
    assert _last_step(run) == 4 and _steps(run) == [2, 4]


def test_an_empty_symlinked_out_is_used_in_place(runner, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    result = _train(runner, link, 2)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and (target / "checkpoints" / "last.safetensors").is_file()


@pytest.mark.parametrize("make", ["file", "parent-file"])
def test_out_that_cannot_be_a_directory_fails_before_training(runner, tmp_path, make):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = blocker if make == "file" else blocker / "run"
    result = _train(runner, out, 1)
    assert_usage_error(result, "is a file")
    assert "cgantool train preset" not in result.output  # refused before the data and model were built
    assert blocker.read_text() == "x"


def test_resume_errors_name_the_good_step_checkpoint(runner, tmp_path):
    run = tmp_path / "run"
    assert _train(runner, run, 4).exit_code == 0
    last = run / "checkpoints" / "last.safetensors"
    last.unlink()
    result = invoke(runner, "train", "--out", run, "--resume", "--steps", "6", "--no-progress")
    assert_usage_error(result, "missing", "step_0000004.safetensors")
    last.write_bytes(b"not a checkpoint")
    result = invoke(runner, "train", "--out", run, "--resume", "--steps", "6", "--no-progress")
    assert_usage_error(result, "cannot resume", "step_0000004.safetensors")


# ----------------------------------------------------------------------------------------------
# Resume: the run's own config, checked once


def test_resume_layers_flags_on_the_runs_own_config(runner, tmp_path):
    run = tmp_path / "run"
    common = ["--preset", "contragan", "--data", "shapes:16", "--batch-size", "4", "--no-progress", "--device", "cpu",
              *TINY, "--set", "train.checkpoint_every=2"]
    assert invoke(runner, "train", *common, "--steps", "2", "--out", run).exit_code == 0
    # a cosmetic --set, an unchanged --seed and the run's own --preset: continues on the contragan config
    result = invoke(runner, "train", "--out", run, "--resume", "--steps", "3", "--set", "train.log_every=1",
                    "--seed", "0", "--preset", "contragan", "--no-progress", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "preset contragan" in result.output and _last_step(run) == 3
    # a change of what is trained is refused, naming that key alone
    result = invoke(runner, "train", "--out", run, "--resume", "--steps", "4", "--set", "loss.cond_2c.weight=0.5",
                    "--no-progress")
    assert_usage_error(result, "would change the run's config: loss.cond_2c.weight\n")


def test_resume_with_fewer_steps_never_rewrites_the_record(runner, tmp_path):
    run = tmp_path / "run"
    assert _train(runner, run, 4).exit_code == 0
    before = _files(run)
    result = invoke(runner, "train", "--out", run, "--resume", "--steps", "2", "--no-progress")
    assert_usage_error(result, "already at step 4")
    assert _files(run) == before  # config.toml still says steps = 4


def test_resume_never_imports_an_extractor_named_by_the_run(runner, tmp_path, monkeypatch):
    """A run whose config names eval.feature_extractor: --resume refuses to import it unless named again."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "planted_extractor.py").write_text(
        "import pathlib\npathlib.Path('imported.txt').open('a').write('x')\n"
        "from tests.fake_extractor import build\n"
    )
    run = tmp_path / "run"
    result = _train(runner, run, 2, "--set", "eval.every=2", "--set", "eval.num_samples=8",
                    "--set", "eval.feature_extractor=planted_extractor:build", "--set", "eval.metrics=['fid']")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "imported.txt").read_text() == "x"  # named on the command line: imported
    sys.modules.pop("planted_extractor", None)
    result = invoke(runner, "train", "--out", run, "--resume", "--steps", "4", "--no-progress")
    assert_usage_error(result, "never imports code", "--set eval.feature_extractor=planted_extractor:build")
    assert (tmp_path / "imported.txt").read_text() == "x"  # not imported again
    assert "planted_extractor" not in sys.modules


def test_single_class_folder_warns_that_training_is_unconditional(runner, tmp_path):
    data = tmp_path / "data" / "only"
    data.mkdir(parents=True)
    for i in range(8):
        Image.new("RGB", (16, 16), (30 * i, 0, 0)).save(data / f"{i}.png")
    result = invoke(runner, "train", "--data", data.parent, "--steps", "1", "--batch-size", "4", "--out",
                    tmp_path / "run", "--no-progress", "--device", "cpu", *TINY)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "single class" in result.output


# ----------------------------------------------------------------------------------------------
# Processes: signals, one writer, kill -9, a full disk


def _spawn(out: Path, *extra: str, steps: int = 100000, limit_bytes: int | None = None, log: Path | None = None):
    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    args = [*CGANTOOL, "train", *BASE, "--steps", str(steps), "--out", str(out), "--set", "train.log_every=1", *extra]
    log = log or out.parent / f"{out.name}-{time.monotonic_ns()}.log"
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1],
                            preexec_fn=limit), log


def _wait_for_rows(out: Path, proc, n: int = 2, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "training ended early"
        rows = out / "metrics.jsonl"
        if rows.exists() and len(rows.read_text().splitlines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError("training made no progress")


@pytest.mark.parametrize("signals", [["SIGTERM"], ["SIGHUP"], ["SIGINT", "SIGINT"]], ids=["term", "hup", "double-int"])
def test_a_stop_signal_leaves_a_resumable_checkpoint(tmp_path, signals):
    out = tmp_path / "run"
    proc, log = _spawn(out, "--set", "train.checkpoint_every=100000")
    _wait_for_rows(out, proc)
    for i, name in enumerate(signals):
        if i:
            time.sleep(0.3)
        proc.send_signal(getattr(signal, name))
    code = proc.wait(timeout=120)
    text = log.read_text()
    assert code == 128 + getattr(signal, signals[0]), text
    assert f"by {signals[0]}" in text and "--resume" in text and "Traceback" not in text
    step = _last_step(out)
    assert step >= 2 and max(_steps(out)) == step
    resumed = subprocess.run([*CGANTOOL, "train", "--out", str(out), "--resume", "--steps", str(step + 2),
                              "--no-progress", "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert _last_step(out) == step + 2


def test_one_writer_per_run_and_a_killed_writer_does_not_block(tmp_path):
    out = tmp_path / "run"
    first, _ = _spawn(out, "--set", "train.checkpoint_every=2")
    try:
        _wait_for_rows(out, first, n=3)
        for extra in (["--resume"], ["--force"], []):
            second = subprocess.run([*CGANTOOL, "train", *BASE, "--steps", "100", "--out", str(out), *extra],
                                    capture_output=True, text=True, timeout=300)
            assert second.returncode == 2, (extra, second.stderr)
            assert f"in use by another cgantool process (pid {first.pid})" in second.stderr, second.stderr
            assert "Traceback" not in second.stderr
        assert not list(tmp_path.glob("run.old-*"))  # --force moved nothing
    finally:
        first.kill()  # kill -9: the lock dies with the process
        first.wait()
    resumed = subprocess.run([*CGANTOOL, "train", "--out", str(out), "--resume", "--steps", str(_last_step(out) + 1),
                              "--no-progress", "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr


def test_kill_9_in_a_loop_never_leaves_a_dead_end(tmp_path):
    """Killed before any checkpoint, then killed again and again: every restart works, orphaned temp files are
    removed, metrics.jsonl never runs ahead of the checkpoint it continues from."""
    out = tmp_path / "run"
    proc, _ = _spawn(out, "--set", "train.checkpoint_every=100000")
    _wait_for_rows(out, proc)
    proc.kill()
    proc.wait()
    assert not list((out / "checkpoints").glob("*.safetensors"))  # no checkpoint: used to be a dead end
    (out / "checkpoints" / ".step_0000002.safetensors.tmp-999999").write_bytes(b"\0" * 4096)  # a write cut short
    # a plain rerun restarts it (no --force); kill it a few times mid-run, then resume to the end
    for i in range(3):
        extra = ["--resume"] if i else []
        proc, _ = _spawn(out, *extra, "--set", "train.checkpoint_every=3")
        _wait_for_rows(out, proc, n=4 + 3 * i)
        time.sleep(0.1 * i)
        proc.kill()
        proc.wait()
    assert not list((out / "checkpoints").glob(".*.tmp-999999"))
    end = _last_step(out) + 2
    done = subprocess.run([*CGANTOOL, "train", "--out", str(out), "--resume", "--steps", str(end), "--no-progress",
                           "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _last_step(out) == end
    steps = _steps(out)
    assert steps == sorted(set(steps)) and steps[-1] == end  # no duplicated or orphaned rows
    assert not [p for p in out.rglob(".*.tmp-*")]


def test_resume_from_a_run_killed_before_its_first_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc, _ = _spawn(out, "--set", "train.checkpoint_every=100000")
    _wait_for_rows(out, proc)
    proc.kill()
    proc.wait()
    resumed = subprocess.run([*CGANTOOL, "train", "--out", str(out), "--resume", "--steps", "3", "--no-progress",
                              "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert _last_step(out) == 3 and _steps(out) == [1, 2, 3]


def test_a_failed_save_names_the_last_good_checkpoint(tmp_path):
    """A file-size limit (as a full disk) makes the step-6 checkpoint fail: one error, exit 1, metrics cut back."""
    out = tmp_path / "run"
    proc, log = _spawn(out, "--set", "train.checkpoint_every=2", steps=4)
    assert proc.wait(timeout=300) == 0, log.read_text()
    size = (out / "checkpoints" / "last.safetensors").stat().st_size
    proc, log = _spawn(out, "--resume", steps=8, limit_bytes=size // 2)
    code = proc.wait(timeout=300)
    text = log.read_text()
    assert code == 1, text
    assert "Traceback" not in text and "cannot write" in text and "step 4" in text and "--resume" in text
    assert _last_step(out) == 4 and _steps(out) == [1, 2, 3, 4]
    proc, log = _spawn(out, "--resume", steps=6)
    assert proc.wait(timeout=300) == 0, log.read_text()
    assert _last_step(out) == 6 and _steps(out) == [1, 2, 3, 4, 5, 6]


def test_a_run_on_a_relative_data_folder_resumes_from_another_directory(runner, tmp_path, monkeypatch):
    work = tmp_path / "work"
    for c in ("a", "b"):
        (work / "images" / c).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (20, 24), (60 * i, 200 if c == "a" else 0, 0)).save(work / "images" / c / f"{i}.png")
    monkeypatch.chdir(work)
    args = ["--batch-size", "4", "--no-progress", "--device", "cpu", *TINY, "--set", "data.resolution=16"]
    result = invoke(runner, "train", "--data", "images", "--steps", "2", "--out", "run", *args)
    assert result.exit_code == 0, result.output
    from cgantool.config import read_toml

    assert read_toml(work / "run" / "config.toml")["data"]["source"] == str(work / "images")
    monkeypatch.chdir(tmp_path)  # elsewhere: the run still finds its data
    result = invoke(runner, "train", "--out", work / "run", "--resume", "--steps", "4", "--no-progress")
    assert result.exit_code == 0, result.output
    assert _last_step(work / "run") == 4


def test_progress_lines_when_stderr_is_a_file_and_the_clock_goes_on_across_a_resume(tmp_path):
    run = tmp_path / "run"
    err = tmp_path / "stderr.txt"
    args = [*CGANTOOL, "train", *[a for a in BASE if a != "--no-progress"], "--out", str(run),
            "--progress-every", "0", "--set", "train.checkpoint_every=3", "--set", "train.log_every=1"]
    with open(err, "w") as f:
        done = subprocess.run([*args, "--steps", "3"], stderr=f, stdout=subprocess.PIPE, timeout=300)
    assert done.returncode == 0, err.read_text()
    text = err.read_text()
    assert "\x1b[" not in text  # no terminal escapes in a log file
    # what was decided, in one line: the device used, resolution, data, resolved conditioning, sizes, the run
    assert "cpu · 16 px · 256 images · class-conditional (20 classes) · sngan G " in text
    assert f"3 steps · run directory {run}" in text
    lines = [line for line in text.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"], text
    assert all(" img/s  ETA " in line for line in lines) and "d/adv" in lines[-1]
    first = [json.loads(line)["time"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    time.sleep(0.5)
    with open(err, "w") as f:
        done = subprocess.run([*args, "--steps", "5", "--resume"], stderr=f, stdout=subprocess.PIPE, timeout=300)
    assert done.returncode == 0, err.read_text()
    times = [json.loads(line)["time"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert times[:3] == first and times[3] > first[-1] and times == sorted(times)  # cumulative, not restarted
    assert f"resuming at step 3 in {run}" in err.read_text()


def test_a_resolution_the_backbone_lacks_fails_before_the_data_is_decoded(runner, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CGANTOOL_CACHE", str(cache))
    data = tmp_path / "images"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(data / c / "0.png")
    result = invoke(runner, "train", "--preset", "contragan", "--data", data, "--set", "data.resolution=24",
                    "--out", tmp_path / "run", "--no-progress")
    assert_usage_error(result, "biggan backbone has no 24 px layout", "16, 32, 48, 64, 128")
    assert not (cache / "data").exists() and not (tmp_path / "run").exists()
    assert_usage_error(invoke(runner, "config", "show", "--preset", "xmcgan", "--set", "data.resolution=20"),
                       "xmcgan backbone has no 20 px layout")
