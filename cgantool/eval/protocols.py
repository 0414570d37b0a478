"""Named evaluation protocols (``cgantool eval --protocol NAME``): the settings under which a paper or a library
measured its FID / IS, so that a number computed here can be put beside theirs.

Each protocol fixes the Inception resize convention (``mode``, clean-fid's names), how many real and generated
images, which split the reference comes from, how many repeats (generated sets with seeds seed, seed+1, ...; the
metrics are their mean, ``metrics_std`` their spread) and how many splits the Inception Score averages over.
The facts come from each project's official code, cited beside it (read, not copied). An explicit flag overrides
the protocol's value for that setting; ``eval --json`` records the protocol, every setting it fixed and what was
overridden.

cgantool evaluates against the data it is given (``--data``, else the checkpoint's training data): a protocol
whose reference is a test/validation split needs that split passed as ``--data`` (a folder of it, a COCO
``coco:captions_val2014.json``); cgantool warns when it is not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cgantool.errors import ConfigError


@dataclass(frozen=True)
class Protocol:
    name: str
    mode: str  # clean | legacy_tensorflow | pytorch_resize (see MODES)
    num_real: int | str  # a count, or "all": the whole reference split
    num_samples: int  # generated images per repeat; 0 = as many as the reference set
    reference_split: str  # the split the reference statistics come from
    repeats: int
    is_splits: int
    source: str  # the file(s) the settings were read from
    note: str = ""


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    # GaParmar/clean-fid, cleanfid/fid.py, compute_fid(gen=..., dataset_name=...): mode="clean", num_gen=50_000,
    # dataset_split="train"; the reference statistics are precomputed on the whole split. (clean-fid has no IS.)
    Protocol("clean", "clean", "all", 50000, "train", 1, 10,
             "GaParmar/clean-fid cleanfid/fid.py (compute_fid defaults)",
             "clean-fid's default: antialiased PIL-bicubic resize, 50k generated vs the whole training split"),
    # kwotsin/mimicry, torch_mimicry/metrics/compute_metrics.py: evaluate(num_runs=3, start_seed=0); its examples
    # and docs call it with num_real_samples=50000, num_fake_samples=50000; datasets/image_loader.py draws the
    # real images at random (np.random.choice, no replacement) from the *training* split; compute_fid.py feeds
    # uint8 images to TF's inception-2015-12-05 graph, which resizes bilinearly (clean-fid's legacy_tensorflow).
    # IS: compute_is.py (inception_score_utils), 10 splits.
    Protocol("legacy-tensorflow", "legacy_tensorflow", 50000, 50000, "train", 3, 10,
             "kwotsin/mimicry torch_mimicry/metrics/{compute_metrics,compute_fid}.py, datasets/image_loader.py",
             "TF Inception with its bilinear resize, as Mimicry and most GAN papers: 50k real (random) / 50k fake, "
             "mean of 3 runs"),
    # POSTECH-CVLab/PyTorch-StudioGAN v0.x, src/train_eval.py (Train_Eval): num_eval = {'train': 50000,
    # 'test': 10000} for CIFAR10 ({'train': 50000, 'valid': 50000 / 10000} ImageNet / Tiny ImageNet): as many fakes
    # as the evaluation split has images, FID against the moments of that whole split ("using {eval_type}
    # moments"); evaluation() sets num_split = 1 for the IS; one run. src/metrics/inception_network.py is
    # pytorch-fid's port of TF's Inception with F.interpolate(bilinear, align_corners=False) (clean-fid's
    # legacy_pytorch; cgantool's pytorch_resize has that resize and scaling, on the TorchScript port). Standing statistics (-std_stat, change_generator_mode) are an option: --standing-stats K.
    Protocol("studiogan", "pytorch_resize", "all", 0, "test", 1, 1,
             "POSTECH-CVLab/PyTorch-StudioGAN src/train_eval.py, src/metrics/inception_network.py (v0.x)",
             "StudioGAN v0.4: as many fakes as the evaluation split (CIFAR-10 test: 10k) vs that whole split"),
    # google-research/xmcgan_image_generation, xmcgan/configs/coco_xmc.py: eval_num = 30000, eval_avg_num = 3;
    # xmcgan/utils/eval_metrics.py (EvalMetric): one fixed pool of eval_num real images of the evaluation split
    # (COCO val2014), eval_num fakes generated from its captions, repeated avg_num times with fresh noise and
    # averaged, IS with num_splits=1; the Inception is the TF graph ported to JAX (TF bilinear resize).
    Protocol("xmcgan", "legacy_tensorflow", 30000, 30000, "val", 3, 1,
             "google-research/xmcgan_image_generation xmcgan/configs/coco_xmc.py, xmcgan/utils/eval_metrics.py",
             "XMC-GAN's COCO evaluation: 30k val images / 30k fakes from val captions, mean of 3 repeats"),
)}

# The Inception input conventions (``eval --mode``). clean and legacy_tensorflow are clean-fid's modes of those
# names, exactly (the same resize, normalisation and network). pytorch_resize is clean-fid's legacy_pytorch *resize*
# (F.interpolate bilinear, align_corners=False) and pytorch-fid's scaling fed to the same TorchScript network:
# clean-fid's legacy_pytorch runs pytorch-fid's own port of the graph (other weights), so its numbers differ
# slightly. cgantool < 0.x called pytorch_resize "legacy_pytorch"; that name is still accepted, with a warning.
MODES = ("clean", "legacy_tensorflow", "pytorch_resize")
RENAMED_MODES = {"legacy_pytorch": "pytorch_resize"}


def canonical_mode(mode: str | None, where: str = "--mode") -> str | None:
    """``mode`` checked against :data:`MODES`; a renamed one (``legacy_pytorch``) → its new name, with a warning."""
    if mode is None:
        return None
    if mode in RENAMED_MODES:
        from cgantool.errors import warn

        new = RENAMED_MODES[mode]
        warn(f"{where} {mode} is now called {new}: it is clean-fid's legacy_pytorch resize fed to the TorchScript "
             f"Inception, not clean-fid's legacy_pytorch (pytorch-fid's network); use {where} {new}")
        return new
    if mode not in MODES:
        raise ConfigError(f"unknown {where} '{mode}'", hint=f"use one of: {', '.join(MODES)}")
    return mode


# What eval measures with no protocol (and what train's in-training eval uses): the settings of cgantool < 0.x.
DEFAULTS: dict[str, Any] = {"mode": "clean", "num_samples": 10000, "num_real": None, "reference_split": None,
                            "repeats": 1, "is_splits": 10}
SETTINGS = ("mode", "num_real", "num_samples", "reference_split", "repeats", "is_splits")


def protocol_names() -> list[str]:
    return list(PROTOCOLS)


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown --protocol '{name}'", hint=f"use one of: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def resolve(name: str | None, **given: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The settings (an explicit ``given`` value (not None) > the protocol's > :data:`DEFAULTS`) and, for a
    protocol, its record for the JSON: its name, every setting it fixed, which were overridden, its source."""
    protocol = get_protocol(name) if name else None
    fixed = {k: v for k, v in asdict(protocol).items() if k in SETTINGS} if protocol else {}
    settings = {k: given[k] if given.get(k) is not None else fixed.get(k, DEFAULTS[k]) for k in SETTINGS}
    if protocol is None:
        return settings, None
    overridden = {k: given[k] for k in SETTINGS if given.get(k) is not None and given[k] != fixed[k]}
    return settings, {"name": protocol.name, "settings": fixed, "overridden": overridden, "source": protocol.source,
                      "note": protocol.note}


def parse_num_real(text: str | None) -> int | str | None:
    """``--num-real``: "all" or a count of at least 2."""
    if text is None:
        return None
    if text.strip().lower() == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise ConfigError(f"--num-real must be 'all' or a count of at least 2, not '{text}'",
                          hint="e.g. --num-real 10000 or --num-real all")
    return value
