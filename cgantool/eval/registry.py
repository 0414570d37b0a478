"""The metrics registry: every metric ``cgantool eval``, ``eval.metrics`` and :func:`~cgantool.eval.evaluate`
know is one :func:`register_metric` call.

A metric declares its name, what it needs besides the real and generated features (``probs``: the extractor's
class probabilities of the fakes, as the Inception Score; ``images``: the generated uint8 images themselves;
``labels``: the class of each real and fake image, given where known), when it applies, and how it is computed: a
function of one :class:`MetricInputs` returning ``{key: float}`` (or ``{key: {name: float}}``), merged into the
result's ``metrics``. A metric whose probs or images are not there (two feature arrays alone) is skipped.
Adding a metric is therefore one decorated function, here or in any module imported before the evaluation::

    @register_metric("mean_gap", description="L2 distance of the feature means")
    def _mean_gap(x: MetricInputs) -> dict[str, float]:
        return {"mean_gap": float(np.linalg.norm(x.real.mean(0) - x.fake.mean(0)))}

Metrics run in registration order. ``auto`` metrics run whenever they apply, asked for or not (the shapes
attribute probe, which reads class or caption alignment off generated shapes images). Nothing here imports torch:
the config validates ``eval.metrics`` against :data:`METRICS` without loading it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cgantool.errors import CgantoolError, ConfigError, DataError
from cgantool.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import torch

NEEDS = ("features", "probs", "labels", "images")  # what a metric may declare it needs


@dataclass
class MetricInputs:
    """What a metric reads. The context (``seed``, ``dataset``, ``num_classes``, ``text``, ``class_names``) is
    known before any image is generated, so ``applies`` may look only at it; the arrays are filled afterwards."""

    seed: int = 0
    dataset: Any = None  # the reference dataset (None when two image folders are compared)
    num_classes: int = 0  # classes of a class-conditional generator (0: unconditional or text-to-image)
    text: bool = False  # a text-to-image generator: fake i is generated from a caption of the dataset
    class_names: Sequence[str] = ()
    is_splits: int = 10  # splits the Inception Score averages over (a protocol's setting)
    real: np.ndarray | None = None  # real features [R, F]
    fake: np.ndarray | None = None  # generated features [N, F]
    fake_probs: np.ndarray | None = None  # [N, C] class probabilities of the fakes ("probs")
    real_labels: np.ndarray | None = None  # [R] class of each real image, when the dataset has labels
    fake_labels: torch.Tensor | None = None  # [N] class each fake was generated for, when known
    fake_images: torch.Tensor | None = None  # uint8 [N, 3, H, W], kept only when a metric needs "images"


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[[MetricInputs], Mapping[str, Any]]
    needs: frozenset[str] = field(default_factory=lambda: frozenset({"features"}))
    applies: Callable[[MetricInputs], bool] | None = None  # None: always
    auto: bool = False
    description: str = ""

    def applicable(self, inputs: MetricInputs) -> bool:
        return self.applies is None or bool(self.applies(inputs))

    def has_inputs(self, inputs: MetricInputs) -> bool:
        """Whether the probs / images it needs were computed (evaluate computes them when a planned metric needs
        them; :func:`~cgantool.eval.evaluate.compute_metrics` on bare features has neither)."""
        return not ("probs" in self.needs and inputs.fake_probs is None
                    or "images" in self.needs and inputs.fake_images is None)


METRICS: Registry[Metric] = Registry("metric")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def register_metric(name: str, *, needs: Iterable[str] = ("features",),
                    applies: Callable[[MetricInputs], bool] | None = None, auto: bool = False,
                    description: str = "") -> Callable[[Callable[[MetricInputs], Mapping[str, Any]]], Any]:
    """Decorator: register ``fn(inputs) -> {key: value}`` as the metric ``name`` (lowercase, digits, ``_``)."""
    wanted = frozenset(needs) | {"features"}
    if not _NAME.fullmatch(name):
        raise ValueError(f"metric name '{name}' must be lowercase letters, digits and '_' (a --metrics entry)")
    if unknown := sorted(wanted - set(NEEDS)):
        raise ValueError(f"metric '{name}' needs {unknown}; a metric may need {', '.join(NEEDS)}")

    def add(fn: Callable[[MetricInputs], Mapping[str, Any]]) -> Callable[[MetricInputs], Mapping[str, Any]]:
        METRICS.register(name)(Metric(name, fn, wanted, applies, auto, description))
        return fn

    return add


def metric_names() -> list[str]:
    return METRICS.names()


def check_metrics(names: Iterable[str], where: str) -> tuple[str, ...]:
    """``names`` without repeats, each registered; otherwise one ConfigError naming ``where`` (a flag or key),
    the closest valid name and all of them."""
    names = tuple(dict.fromkeys(names))
    for name in names:
        if name not in METRICS:
            raise ConfigError(f"unknown metric '{name}' in {where}", hint=METRICS.hint(name))
    return names


def planned(selected: Iterable[str], inputs: MetricInputs) -> list[Metric]:
    """The metrics to compute, in registration order: the selected ones and the ``auto`` ones, where they apply."""
    chosen = set(selected)
    return [m for _, m in METRICS.items() if (m.name in chosen or m.auto) and m.applicable(inputs)]


def run_metrics(metrics: Sequence[Metric], inputs: MetricInputs) -> dict[str, Any]:
    """Every metric's values merged into one dict (floats, or dicts of floats); a metric returning anything else,
    or a key another metric already gave, is an error naming it. A metric whose probs or images are missing is
    skipped."""
    out: dict[str, Any] = {}
    for metric in metrics:
        if not metric.has_inputs(inputs):
            continue
        values = metric.compute(inputs)
        if not isinstance(values, Mapping):
            raise CgantoolError(f"metric '{metric.name}' returned {type(values).__name__}, not a dict of values",
                                hint="a metric returns {key: number} or {key: {name: number}}")
        for key, value in values.items():
            if key in out:
                raise CgantoolError(f"metric '{metric.name}' returns '{key}', which another metric already gave",
                                    hint=f"rename the keys of metric '{metric.name}'")
            out[str(key)] = _number(value, metric.name, key)
    return out


def _number(value: Any, metric: str, key: str) -> float | dict[str, float]:
    try:
        if isinstance(value, Mapping):
            return {str(k): float(v) for k, v in value.items()}
        return float(value)
    except (TypeError, ValueError):
        raise CgantoolError(f"metric '{metric}' returned a non-number for '{key}'",
                            hint="a metric returns {key: number} or {key: {name: number}}") from None


# ------------------------------------------------------------------------------------------ the built-in metrics


@register_metric("fid", description="Fréchet Inception Distance (clean-fid's convention)")
def _fid(x: MetricInputs) -> dict[str, float]:
    from cgantool.eval import metrics as M

    return {"fid": float(M.frechet_distance(*M.feature_stats(x.real), *M.feature_stats(x.fake)))}


@register_metric("kid", description="Kernel Inception Distance: mean and std over 100 subsets")
def _kid(x: MetricInputs) -> dict[str, float]:
    from cgantool.eval import metrics as M

    mean, std = M.kernel_inception_distance(x.real, x.fake, seed=x.seed)
    return {"kid": float(mean), "kid_std": float(std)}


@register_metric("is", needs=("probs",), description="Inception Score of the fakes: mean and std over 10 splits "
                 "(a protocol's is_splits)")
def _is(x: MetricInputs) -> dict[str, float]:
    from cgantool.eval import metrics as M

    mean, std = M.inception_score(x.fake_probs, splits=max(1, min(x.is_splits, len(x.fake_probs))))
    return {"is": float(mean), "is_std": float(std)}


@register_metric("prdc", description="precision, recall (k=3), density, coverage (k=5)")
def _prdc(x: MetricInputs) -> dict[str, float]:
    from cgantool.eval import metrics as M

    return {k: float(v) for k, v in M.prdc(x.real, x.fake).items()}


def _shapes_probe_applies(x: MetricInputs) -> bool:
    """The attribute probe reads class-conditional fakes of the built-in shapes data, and text-to-image fakes of
    single-object shapes (each caption names one object: its (colour, shape) is the image's class)."""
    from cgantool.data.shapes import class_names

    d = x.dataset
    if d is None or d.source != "shapes" or d.class_names != class_names():
        return False
    if x.text:
        return d.labels is not None and all(len(caps) and caps[0].count(" and ") == 0 for caps in d.captions[:100])
    return x.num_classes > 0


@register_metric("attribute_accuracy", needs=("images", "labels"), applies=_shapes_probe_applies, auto=True,
                 description="shapes data: how often a fake shows its class or caption (and the real ceiling)")
def _attribute_accuracy(x: MetricInputs) -> dict[str, float]:
    from cgantool.eval.probe import attribute_accuracy, load_probe, real_ceiling

    probe = load_probe(x.dataset.resolution)
    out = attribute_accuracy(x.fake_images, x.fake_labels, probe)
    out["attribute_accuracy_real"] = real_ceiling(probe, x.dataset.resolution)
    return out


@register_metric("fid_per_class", needs=("labels",), applies=lambda x: x.num_classes > 0,
                 description="FID of each class (class-conditional models), and their mean")
def _fid_per_class(x: MetricInputs) -> dict[str, Any]:
    import numpy as np

    from cgantool.eval import metrics as M

    if x.real_labels is None:
        raise DataError("per-class FID needs a labelled dataset", hint="evaluate against the labelled training data")
    per = {}
    fake_labels = x.fake_labels.numpy()
    for c in range(x.num_classes):
        r = x.real[x.real_labels == c]
        f = x.fake[fake_labels == c]
        if len(r) >= 2 and len(f) >= 2:
            name = x.class_names[c] if c < len(x.class_names) else str(c)
            per[name] = float(M.frechet_distance(*M.feature_stats(r), *M.feature_stats(f)))
    return {"fid_per_class": per, "fid_intra_class_mean": float(np.mean(list(per.values()))) if per else float("nan")}
