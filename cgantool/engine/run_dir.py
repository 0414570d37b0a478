"""The run directory of ``train --out RUN``: what training may create, replace, lock, resume and clean up.

What this module guarantees (the README's "Your files are safe"):

- Nothing is ever deleted. ``--force`` replaces only a directory that is recognisably a cgantool run (its
  ``.cgantool-run`` marker, or ``config.toml`` beside ``checkpoints/`` for runs from before the marker), never
  one that is, or holds, the training data, the working directory or the home directory; the old run is moved
  aside to ``RUN.old-<time>``, not deleted. An existing empty directory is used in place.
- One writer per run: an OS lock on ``RUN/.lock`` is held for the whole run. The OS releases it when the process
  dies, so a lock left by a killed process never blocks the next start; a live holder is named in the error.
- A run that never saved a checkpoint (killed during its first save) is no dead end: ``--resume`` starts it
  from step 0 with its own ``config.toml``, and a plain rerun restarts it in place.
- At start, the temporary files a killed process left behind (``.NAME.tmp-PID``) are removed, and
  ``metrics.jsonl`` rows past the checkpoint the run continues from are dropped (no row without a checkpoint).
- SIGINT, SIGTERM and SIGHUP all mean "checkpoint at the end of this step and stop" (:class:`StopSignals`);
  further signals wait for that checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from cgantool.checkpoint import Checkpoint, load_checkpoint
from cgantool.files import atomic_write, check_output
from cgantool.config import RunConfig, diff_configs, read_toml, validate_config
from cgantool.errors import CgantoolError, CheckpointError, ConfigError

MARKER = ".cgantool-run"
LOCK = ".lock"
# Keys a resumed run may change: they decide when things are logged and kept, never what is trained.
MAY_DIFFER_ON_RESUME = ("train.steps", "train.log_every", "train.sample_every", "train.checkpoint_every",
                        "train.keep_last", "train.tensorboard")

try:  # POSIX; elsewhere runs are not locked (documented in the README)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


def is_run(path: Path) -> bool:
    """A directory cgantool created: its marker, or config.toml beside checkpoints/ (runs made before the marker)."""
    return (path / MARKER).is_file() or ((path / "config.toml").is_file() and (path / "checkpoints").is_dir())


def step_checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("step_*.safetensors"))


def newest_good_checkpoint(run: Path) -> Path | None:
    """The newest ``step_*.safetensors`` whose metadata reads as a cgantool checkpoint."""
    for path in reversed(step_checkpoints(run)):
        try:
            load_checkpoint(path)
        except CgantoolError:
            continue
        return path
    return None


def damaged_checkpoint_hint(run: Path) -> str:
    """The hint for a missing or broken last.safetensors: the good step file to continue from, if any."""
    good = newest_good_checkpoint(run)
    last = run / "checkpoints" / "last.safetensors"
    if good is None:
        return f"no good checkpoint is left in {run / 'checkpoints'}; start again with --force (the old run is moved aside)"
    return f"the newest good checkpoint is {good}: make it the resume point with `cp {good} {last}`, then resume again"


def resume_point(run: Path) -> Checkpoint | None:
    """The checkpoint ``--resume`` continues from (last.safetensors); None for a run that never saved one."""
    last = run / "checkpoints" / "last.safetensors"
    if last.exists() or last.is_symlink():
        try:
            return load_checkpoint(last)
        except CheckpointError as e:
            raise CheckpointError(f"cannot resume from {last}: {e.message}", hint=damaged_checkpoint_hint(run)) from None
    if step_checkpoints(run):
        raise CheckpointError(f"{last} is missing", hint=damaged_checkpoint_hint(run))
    return None


def stored_config(run: Path) -> tuple[RunConfig, Checkpoint | None]:
    """The config a run was started with, and the checkpoint to resume from (None: resume from step 0)."""
    if not run.is_dir():
        raise CgantoolError(f"nothing to resume: {run} is not a directory", hint="start a new run without --resume")
    if not is_run(run):
        raise CgantoolError(f"nothing to resume: {run} is not a cgantool run directory",
                            hint="--resume takes the --out of an earlier `cgantool train`")
    ckpt = resume_point(run)
    if ckpt is not None:
        return ckpt.config, ckpt
    try:
        return validate_config(read_toml(run / "config.toml")), None
    except (ConfigError, OSError, UnicodeDecodeError) as e:
        raise CgantoolError(f"{run} has no checkpoint and its config.toml cannot be read ({e})",
                            hint="start the run again with --force (the old run is moved aside)") from None


def check_resume(stored: RunConfig, cfg: RunConfig, ckpt: Checkpoint | None, named: set[str]) -> None:
    """Refuse a resume that changes what is trained, trains nothing, or imports code named by the run's files.

    ``cfg`` is the run's stored config with this command's --config / --set / flags layered on; ``named`` holds
    the dotted keys this command line set.
    """
    differing = [key for key in diff_configs(stored, cfg) if key not in MAY_DIFFER_ON_RESUME]
    if differing:
        raise ConfigError(
            f"--resume would change the run's config: {', '.join(differing)}",
            hint="resume with the run's own settings (only the step budget, logging and checkpoint schedule may differ)",
        )
    at = ckpt.step if ckpt is not None else 0
    if cfg.train.steps <= at:
        raise ConfigError(f"the run is already at step {at} of {stored.train.steps}; nothing to train",
                          hint=f"pass --steps with more than {at} steps to train further")
    extractor = cfg.eval.feature_extractor
    if cfg.eval.every and extractor and "eval.feature_extractor" not in named:
        raise ConfigError(
            f"the run's config names the feature extractor '{extractor}', and cgantool never imports code named "
            "only by a run's files",
            hint=f"to run it, name it yourself: --set eval.feature_extractor={extractor} (or --set eval.every=0)",
        )


# ----------------------------------------------------------------------------------------------
# Checking and opening


@dataclass
class Plan:
    """What training will do to ``run``: decided by :func:`check` before anything is written."""

    run: Path
    kind: str  # "new" (absent or empty), "restart" (a run with no checkpoint), "replace" (--force), "resume"
    start_step: int = 0


def check_out_path(out: Path, flag: str = "--out") -> None:
    """A run directory that can be created: not a file, no file among its parents, writable (an existing run is
    judged by :func:`check`)."""
    check_output(out, folder=True, force=True, what=flag)


def _protected(run: Path, data_source: str) -> str | None:
    """Why ``run`` must not be moved aside: it is, or holds, the data, the working directory or home."""
    here = run.resolve()
    guarded = {"the working directory": Path.cwd(), "your home directory": Path.home()}
    if data_source and Path(data_source).exists():
        guarded["the training data"] = Path(data_source)
    for what, path in guarded.items():
        path = path.resolve()
        if path == here or here in path.parents:
            return f"it {'is' if path == here else 'holds'} {what} ({path})"
    if here.parent == here:
        return "it is the file system's root"
    return None


def check(cfg: RunConfig, run: Path, *, resume: bool, force: bool, ckpt: Checkpoint | None = None,
          probe_lock: bool = True) -> Plan:
    """Decide what training may do to ``run``. Reads only: every refusal comes before anything is written.

    ``probe_lock``: fail now when a live process holds the run (the main process; the other ranks of a torchrun
    run skip it, since their own main process may already hold it).
    """
    check_out_path(run)
    if resume:
        if probe_lock:
            _refuse_if_locked(run)
        return Plan(run, "resume", ckpt.step if ckpt is not None else 0)
    if not run.exists() or (run.is_dir() and not any(run.iterdir())):
        return Plan(run, "new")
    if not is_run(run):
        if force:
            raise CgantoolError(f"--force replaces only cgantool runs, and {run} is not one (no {MARKER} marker)",
                                hint="nothing was touched; choose another --out, or move the folder yourself")
        raise CgantoolError(f"--out {run} exists and is not empty", hint="choose another --out (an empty or new folder)")
    if probe_lock:
        _refuse_if_locked(run)
    if not (run / "checkpoints" / "last.safetensors").exists() and not step_checkpoints(run):
        return Plan(run, "restart")  # the earlier attempt never saved a checkpoint: nothing to lose
    if not force:
        raise CgantoolError(f"run directory {run} already exists",
                            hint="pass --resume to continue it, --force to move it aside and start again, or choose another --out")
    why = _protected(run, cfg.data.source)
    if why:
        raise CgantoolError(f"--force will not move {run} aside: {why}", hint="choose another --out; nothing was touched")
    return Plan(run, "replace")


class RunLock:
    """An exclusive OS lock on RUN/.lock for the life of the run (released by the OS if the process dies)."""

    def __init__(self, run: Path):
        self.path = run / LOCK
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None:  # pragma: no cover
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise _in_use(self.path.parent) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _in_use(run: Path) -> CgantoolError:
    try:
        holder = (run / LOCK).read_text().strip() or "unknown"
    except OSError:
        holder = "unknown"
    return CgantoolError(f"run directory {run} is in use by another cgantool process (pid {holder})",
                         hint="wait for it, or stop it with Ctrl-C or `kill PID` (it saves a checkpoint first); "
                         "or choose another --out")


def _refuse_if_locked(run: Path) -> None:
    """Fail early (before data is loaded) when a live process holds the run; writes nothing."""
    if fcntl is None or not (run / LOCK).is_file():
        return
    fd = os.open(run / LOCK, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        raise _in_use(run) from None
    finally:
        os.close(fd)


def open_run(plan: Plan, cfg: RunConfig) -> RunLock:
    """Create (or move aside and recreate) the run directory, lock it and tidy it. Main process only."""
    run = plan.run
    if plan.kind == "replace":
        old = RunLock(run).acquire()  # nobody may be writing the run we move
        aside = run.with_name(f"{run.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while aside.exists():
            n += 1
            aside = run.with_name(f"{run.name}.old-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        os.rename(run, aside)
        old.release()
    run.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run).acquire()
    if plan.kind in ("new", "restart", "replace") and (
        (run / "checkpoints" / "last.safetensors").exists() or step_checkpoints(run)
    ):  # another process saved a checkpoint here between check() and now
        lock.release()
        raise CgantoolError(f"run directory {run} was just written by another process", hint="choose another --out")
    (run / "checkpoints").mkdir(exist_ok=True)
    (run / "samples").mkdir(exist_ok=True)
    if not (run / MARKER).exists():
        atomic_write(run / MARKER, lambda tmp: tmp.write_text(json.dumps({"created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n"))
    remove_temp_files(run)
    trim_metrics(run / "metrics.jsonl", plan.start_step)
    return lock


def remove_temp_files(run: Path) -> list[Path]:
    """Delete ``.NAME.tmp-PID`` files that a killed writer left in the run (we hold its lock: none is live)."""
    removed = []
    for folder in (run, run / "checkpoints", run / "samples"):
        for path in folder.glob(".*.tmp-*"):
            if path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def trim_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl rows after ``step`` (rows no checkpoint backs), in place: works on a full disk too."""
    if not path.is_file():
        return
    offset = 0
    with open(path, "rb") as f:
        for line in f:
            try:
                row_step = json.loads(line).get("step", 0)
            except (ValueError, AttributeError):
                break  # a half-written last row (the writer was killed)
            if not isinstance(row_step, int) or row_step > step:
                break
            offset += len(line)
    if offset < path.stat().st_size:
        os.truncate(path, offset)


# ----------------------------------------------------------------------------------------------
# Signals


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP set ``signum``; the loop checkpoints at the end of the step and stops.

    A second signal does not abort the checkpoint: it prints a line and waits for it (kill -9 still works).
    With ``hold=True`` (the CLI, whose process ends with the run) these signals are ignored after a stop, so one
    that comes while the process exits cannot cut the exit short. Outside the main thread (no signal handlers
    there) the process keeps Python's defaults.
    """

    SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)

    def __init__(self, hold: bool = False) -> None:
        self.signum: int | None = None
        self.hold = hold
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _handler(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            return
        # Async-signal safe: no buffered I/O from a handler.
        os.write(2, b"stopping: the checkpoint of this step is being written; the process ends by itself\n")

    def __enter__(self) -> StopSignals:
        try:
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handler)
        except ValueError:  # not the main thread
            self._previous.clear()
        return self

    def __exit__(self, *exc) -> bool:
        if self.hold and self.signum is not None:  # ignored at the C level: survives interpreter shutdown too
            for s in self._previous:
                signal.signal(s, signal.SIG_IGN)
            return False
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        return False


# ----------------------------------------------------------------------------------------------
# Checkpoint files


def link_last(path: Path, name: str = "last.safetensors") -> None:
    """Point checkpoints/<name> at ``path`` atomically (hard link; copy where links fail)."""
    import shutil

    last = path.with_name(name)
    tmp = path.with_name(f".{name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:
        shutil.copyfile(path, tmp)
    os.replace(tmp, last)


def prune(folder: Path, keep: int) -> None:
    """Keep the newest ``keep`` step_*.safetensors files."""
    for old in sorted(folder.glob("step_*.safetensors"))[:-keep]:
        old.unlink()
