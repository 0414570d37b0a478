"""The benchmark scripts answer bad input as the CLI does: an ``error:`` line, a ``hint:`` line, exit code 2."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks._cli import non_negative, positive, run
from cgantool.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_count_types_refuse_what_would_end_in_a_traceback():
    assert positive("3") == 3 and non_negative("0") == 0
    for bad in ("0", "-2", "x", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="0 or more"):
        non_negative("-1")


def test_run_turns_a_cgantool_error_into_two_lines_and_exit_2(capsys):
    def main() -> None:
        raise ConfigError("unknown preset 'x'", hint="valid presets: sngan")

    with pytest.raises(SystemExit) as e:
        run(main)
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == ["error: unknown preset 'x'", "hint: valid presets: sngan"]


def test_run_lets_other_errors_through():  # a bug is a traceback, not a usage error
    def main() -> None:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        run(main)


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_train_throughput_unknown_preset_is_one_error_line_not_a_traceback():
    out = _script("benchmarks/train_throughput.py", "--preset", "nosuch", "--device", "cpu")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines[0] == "error: unknown preset 'nosuch'"
    assert lines[1].startswith("hint: valid presets:") and "sngan" in lines[1]
    assert len(lines) == 2 and out.stdout == ""


def test_xmc_alignment_on_a_directory_without_checkpoints(tmp_path):
    out = _script("benchmarks/xmc_alignment.py", "--run", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith(f"error: no step_*.safetensors checkpoints in {tmp_path / 'checkpoints'}")


def test_zero_steps_is_a_usage_error():
    out = _script("benchmarks/train_throughput.py", "--steps", "0")
    assert out.returncode == 2 and "--steps: must be at least 1, got 0" in out.stderr
    assert "Traceback" not in out.stderr


def test_folder_listing_runs_small_and_checks_the_two_listings_agree(tmp_path):
    import json

    out = _script("benchmarks/folder_listing.py", "--files", "60", "--classes", "7", "--dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["files"] == 60 and row["classes"] == 7
    assert all(row[k] >= 0 for k in ("image_files_s", "rglob_s", "fingerprint_s", "probe_s"))
    assert list(tmp_path.iterdir()) == []  # its tree is removed
