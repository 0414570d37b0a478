"""FID as the papers measured it (issue 27): a seeded, class-stratified reference subset of the whole split, the
whole split with ``--num-real all``, per-class FID on each class's own images, named protocols recorded in the
JSON, and explicit flags over a protocol's settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cgantool.errors import ConfigError
from cgantool.eval import evaluate
from cgantool.eval.protocols import PROTOCOLS, SETTINGS, parse_num_real, resolve
from cgantool.eval.reference import reference_size, select_reference
from tests.conftest import invoke
from tests.test_cli import assert_usage_error

FX = "tests.fake_extractor:build"
SIZES = (30, 50, 70, 90, 110, 130, 150, 170, 190, 10)  # a class-sorted split of 1000 labels


def _sorted_labels() -> np.ndarray:
    return np.repeat(np.arange(len(SIZES)), SIZES)


def test_the_reference_of_a_class_sorted_split_spans_every_class_in_proportion():
    labels = _sorted_labels()
    index, rule = select_reference(labels, len(labels), 300, seed=0)
    assert rule == "stratified" and len(index) == 300 and len(set(index)) == 300
    counts = np.bincount(labels[index], minlength=len(SIZES))
    quota = 300 * np.array(SIZES) / 1000
    assert (counts >= np.floor(quota)).all() and (counts <= np.ceil(quota)).all()  # exact by largest remainder
    assert counts.tolist() == [9, 15, 21, 27, 33, 39, 45, 51, 57, 3]
    # a class whose quota is under one image still spans the reference when N >= the number of classes
    tiny = np.repeat(np.arange(4), [1, 1, 49, 49])  # quotas at N = 10: 0.1, 0.1, 4.9, 4.9
    counts = np.bincount(tiny[select_reference(tiny, 100, 10, seed=0)[0]], minlength=4)
    assert counts.tolist() == [1, 1, 4, 4]
    # the first 300 images (the old reference) span classes 0..4 only
    assert len(np.unique(labels[:300])) == 5 and len(np.unique(labels[index])) == len(SIZES)


def test_same_seed_same_subset_another_seed_another():
    labels = _sorted_labels()
    a, _ = select_reference(labels, 1000, 300, seed=0)
    b, _ = select_reference(labels, 1000, 300, seed=0)
    c, _ = select_reference(labels, 1000, 300, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    u, rule = select_reference(None, 1000, 300, seed=0)  # unlabelled: a plain random subset
    assert rule == "random" and len(set(u)) == 300 and u.max() > 300


def test_num_real_all_is_the_whole_split():
    assert reference_size("all", 50, 1000) == 1000 and reference_size(None, 50, 1000) == 50
    assert reference_size(None, 0, 1000) == 1000 and reference_size(5000, 50, 1000) == 1000
    index, rule = select_reference(_sorted_labels(), 1000, 1000, seed=3)
    assert rule == "all" and np.array_equal(index, np.arange(1000))
    assert parse_num_real("all") == "all" and parse_num_real("12") == 12 and parse_num_real(None) is None
    with pytest.raises(ConfigError, match="--num-real"):
        parse_num_real("1")


@pytest.fixture(scope="module")
def sorted_folder(tmp_path_factory):
    """4 class folders of 6 images each (8 px), each class its own flat colour plus noise: a class-sorted split."""
    root = tmp_path_factory.mktemp("sorted")
    rng = np.random.default_rng(0)
    for c in range(4):
        (root / f"class{c}").mkdir()
        for i in range(6):
            img = np.clip(rng.normal(60 * c + 30, 20, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"class{c}" / f"{i}.png")
    from cgantool.config import DataConfig
    from cgantool.data import load_dataset

    return load_dataset(DataConfig(source=str(root), resolution=8))


def _opts(**kw):
    return evaluate.EvalOptions(batch_size=5, feature_extractor=FX, **kw)


def test_reference_features_of_a_class_sorted_folder(sorted_folder):
    opts = _opts(num_samples=8)
    extractor = evaluate.Extractor(opts)
    real = evaluate.real_features(sorted_folder, extractor, opts)
    labels = sorted_folder.labels.numpy()
    assert real["reference"] == {"num_real": 8, "reference_seed": 0, "reference_selection": "stratified",
                                 "reference_classes": 4}
    assert np.bincount(real["labels"]).tolist() == [2, 2, 2, 2]
    np.testing.assert_array_equal(real["labels"], labels[real["index"]])
    expected = extractor.features(sorted_folder.images[real["index"]]).numpy()
    np.testing.assert_allclose(real["features"], expected)
    again = evaluate.real_features(sorted_folder, extractor, opts)  # from the cache: the same subset
    np.testing.assert_array_equal(again["index"], real["index"])
    other = evaluate.real_features(sorted_folder, extractor, _opts(num_samples=8, reference_seed=1))
    assert not np.array_equal(other["index"], real["index"]) and np.bincount(other["labels"]).tolist() == [2] * 4
    whole = evaluate.real_features(sorted_folder, extractor, _opts(num_samples=8, num_real="all"))
    assert whole["reference"]["reference_selection"] == "all" and len(whole["features"]) == 24


def test_the_cache_key_names_the_selection(sorted_folder, monkeypatch):
    from cgantool.eval import reference

    keys = []
    real_path = reference._cache_path
    monkeypatch.setattr(reference, "_cache_path", lambda kind, key: keys.append(key) or real_path(kind, key))
    opts = _opts(num_samples=8, reference_seed=5)
    evaluate.real_features(sorted_folder, evaluate.Extractor(opts), opts)
    assert keys[-1]["selection"] == "stratified" and keys[-1]["reference_seed"] == 5 and keys[-1]["v"] >= 2


def test_per_class_fid_uses_only_that_class_images(sorted_folder):
    from cgantool.eval import metrics as M
    from cgantool.eval.registry import METRICS, MetricInputs

    import torch

    opts = _opts(num_samples=12)
    extractor = evaluate.Extractor(opts)
    real = evaluate.real_features(sorted_folder, extractor, opts)
    fake = np.random.default_rng(1).normal(size=(16, real["features"].shape[1]))
    fake_labels = torch.arange(16) % 4
    x = MetricInputs(num_classes=4, class_names=sorted_folder.class_names, real=real["features"],
                     real_labels=real["labels"], fake=fake, fake_labels=fake_labels)
    per = METRICS.get("fid_per_class").compute(x)["fid_per_class"]
    assert sorted(per) == sorted(sorted_folder.class_names)
    labels = sorted_folder.labels.numpy()
    for c, name in enumerate(sorted_folder.class_names):
        own = [i for i in real["index"] if labels[i] == c]  # this class's images of the reference, and no other
        feats = extractor.features(sorted_folder.images[own]).numpy()
        expected = M.frechet_distance(*M.feature_stats(feats), *M.feature_stats(fake[fake_labels.numpy() == c]))
        assert per[name] == pytest.approx(float(expected), rel=1e-6)


def test_protocol_resolution_and_overrides():
    for name, p in PROTOCOLS.items():
        settings, record = resolve(name)
        assert record["name"] == name and record["source"] and set(record["settings"]) == set(SETTINGS)
        assert settings == record["settings"] and record["overridden"] == {}
    settings, record = resolve("legacy-tensorflow", num_samples=100, repeats=1, mode=None)
    assert settings["num_samples"] == 100 and settings["repeats"] == 1 and settings["mode"] == "legacy_tensorflow"
    assert record["overridden"] == {"num_samples": 100, "repeats": 1}
    assert resolve(None)[1] is None and resolve(None)[0]["num_samples"] == 10000
    assert PROTOCOLS["xmcgan"].num_samples == 30000 and PROTOCOLS["xmcgan"].repeats == 3
    assert PROTOCOLS["clean"].num_real == "all" and PROTOCOLS["studiogan"].mode == "pytorch_resize"
    with pytest.raises(ConfigError, match="unknown --protocol"):
        resolve("mimicry-ish")


def _eval(runner, tiny_run, *args):
    result = invoke(runner, "eval", tiny_run / "checkpoints" / "last.safetensors", *args, "--feature-extractor", FX,
                    "--device", "cpu", "--batch-size", "32", "--json", "-")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result


def test_eval_without_protocol_records_what_it_measured(tiny_run, runner):
    from cgantool.config import DataConfig
    from cgantool.data import load_dataset

    labels = load_dataset(DataConfig(source="shapes", resolution=16, num_images=256)).labels.numpy()
    present = len(np.unique(labels[select_reference(labels, 256, 40, seed=0)[0]]))
    assert present == len(np.unique(labels))  # every class, even one of 1 or 2 images in 256 (0.3 of a place)
    doc, result = _eval(runner, tiny_run, "--fid", "-n", "40")
    assert doc["protocol"] is None and doc["num_real"] == 40 and doc["num_fake"] == 40
    assert doc["reference_selection"] == "stratified" and doc["reference_seed"] == 0
    assert doc["reference_classes"] == present and doc["mode"] == "clean" and doc["repeats"] == 1
    shown = " ".join(result.output.split())  # the table title, however the console wraps it
    assert "real (stratified)" in shown and "clean mode" in shown
    whole, _ = _eval(runner, tiny_run, "--fid", "-n", "20", "--num-real", "all")
    assert whole["num_real"] == 256 and whole["reference_selection"] == "all" and whole["num_fake"] == 20


def test_protocol_settings_are_recorded_and_flags_override_them(tiny_run, runner):
    doc, _ = _eval(runner, tiny_run, "--protocol", "legacy-tensorflow", "-n", "20", "--fid", "--is")
    p = doc["protocol"]
    assert p["name"] == "legacy-tensorflow" and p["settings"]["mode"] == "legacy_tensorflow"
    assert p["settings"]["num_samples"] == 50000 and p["settings"]["repeats"] == 3 and "mimicry" in p["source"]
    assert p["overridden"] == {"num_samples": 20}
    assert doc["mode"] == "legacy_tensorflow" and doc["repeats"] == 3 and doc["num_fake"] == 20
    assert doc["num_real"] == 256 and doc["reference_selection"] == "all"  # 50k asked, 256 there
    assert len(doc["metrics_per_repeat"]) == 3 and {"fid", "is"} <= doc["metrics_std"].keys()
    assert doc["metrics"]["fid"] == pytest.approx(np.mean([r["fid"] for r in doc["metrics_per_repeat"]]))

    doc, result = _eval(runner, tiny_run, "--protocol", "studiogan", "--fid")
    assert doc["num_fake"] == doc["num_real"] == 256 and doc["is_splits"] == 1 and doc["mode"] == "pytorch_resize"
    assert doc["reference_split"] == "test" and "test split" in result.stderr

    doc, _ = _eval(runner, tiny_run, "--protocol", "xmcgan", "--repeats", "1", "--num-real", "50", "-n", "30",
                   "--mode", "clean", "--is-splits", "2", "--is")
    assert doc["protocol"]["overridden"] == {"repeats": 1, "num_real": 50, "num_samples": 30, "mode": "clean",
                                             "is_splits": 2}
    assert doc["protocol"]["settings"]["num_real"] == 30000 and doc["num_real"] == 50 and doc["num_fake"] == 30
    assert doc["mode"] == "clean" and doc["repeats"] == 1 and doc["is_splits"] == 2 and "metrics_std" not in doc


def test_bad_protocol_and_num_real_are_usage_errors(tiny_run, runner):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    assert_usage_error(invoke(runner, "eval", ckpt, "--protocol", "nope"), "unknown --protocol", "legacy-tensorflow")
    assert_usage_error(invoke(runner, "eval", ckpt, "--num-real", "some"), "--num-real")


def test_standing_statistics_re_estimate_batch_norm_on_a_copy():
    import torch
    from torch import nn

    from cgantool.eval.standing import with_standing_statistics
    from cgantool.sampling import latents

    class G(nn.Module):
        z_dim = 4

        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(4)

        def forward(self, z, y=None):
            return self.bn(z * 3 + 1)

    g = G()
    g.bn.running_mean.fill_(7.0)
    g2, layers = with_standing_statistics(g, 3, 8, seed=0, device="cpu", cond_for=lambda idx: None)
    assert layers == 1 and g2 is not g and not g2.training
    assert torch.all(g.bn.running_mean == 7.0)  # the original is untouched
    seen = torch.stack([(latents(0x5EED, range(b * 8, (b + 1) * 8), 4) * 3 + 1).mean(0) for b in range(3)])
    torch.testing.assert_close(g2.bn.running_mean, seen.mean(0))  # momentum None: the cumulative average
    assert with_standing_statistics(nn.Linear(2, 2), 3, 8, 0, "cpu", lambda idx: None)[1] == 0


def test_eval_standing_stats_is_recorded(tiny_run, runner):
    doc, _ = _eval(runner, tiny_run, "--fid", "-n", "20", "--standing-stats", "2")
    assert doc["standing_stats"] == 2 and doc["standing_stats_layers"] > 0 and doc["metrics"]["fid"] > 0
    plain, _ = _eval(runner, tiny_run, "--fid", "-n", "20")
    assert plain["standing_stats"] == 0 and "standing_stats_layers" not in plain


def test_the_table_names_each_class_of_per_class_fid(tiny_run, runner):
    doc, result = _eval(runner, tiny_run, "--fid", "--per-class", "-n", "40")
    names = list(doc["metrics"]["fid_per_class"])
    shown = " ".join(result.output.split())
    assert names and all(f"fid_per_class[{name}]" in shown for name in names)  # not eaten as rich markup
