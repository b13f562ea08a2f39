"""ScatterNet features and their normalisation (features.py): shape, the properties that make them
free of privacy cost, the cache, and DP-SGD on them (the fast engine's step against tf-privacy's)."""

import json

import numpy as np
import pytest

from conftest import DATA, raw_spec, typed
from dprepro import features
from dprepro.data import load_mnist


@pytest.fixture(scope="module")
def images():
    return load_mnist(DATA, train_examples=16, test_examples=1).x_train


def test_scattering_has_81_channels_of_7x7_and_each_image_its_own(images):
    """Each image's features are a function of that image alone (computed in a batch of 16 or on its
    own: the same), which is why they cost no privacy; a blank image has none; the order-0 channel
    is the local mean (a constant image c gives c there, away from the borders)."""
    batch = features.scattering(images)
    assert batch.shape == (16, 7, 7, 81) and batch.dtype == np.float32
    alone = features.scattering(images[5:6])
    np.testing.assert_allclose(alone[0], batch[5], rtol=0, atol=1e-6)
    assert not np.allclose(batch[5], batch[6])
    assert np.all(features.scattering(np.zeros((1, 28, 28, 1), np.float32)) == 0)
    constant = features.scattering(np.full((1, 28, 28, 1), 0.5, np.float32))
    np.testing.assert_allclose(constant[0, 2:5, 2:5, 0], 0.5, rtol=1e-4)
    assert np.abs(constant[0, 2:5, 2:5, 1:]).max() < 1e-4       # wavelets see no edges in a constant


def test_the_cache_is_used_checked_and_remade(images, tmp_path, monkeypatch):
    monkeypatch.setenv("DPREPRO_CACHE_DIR", str(tmp_path))
    files = {"test-file": "0" * 64}
    lines = []
    first = features.cached_scattering(images, files, "train", lines.append)
    assert len(lines) == 1 and "ScatterNet of the 16 train images" in lines[0]
    (cached,) = (tmp_path / "features").glob("*.npy")
    assert json.loads(cached.with_suffix(".json").read_text())["shape"] == [16, 7, 7, 81]

    def no_computing(_):
        raise AssertionError("computed although cached")
    monkeypatch.setattr(features, "scattering", no_computing)
    np.testing.assert_array_equal(features.cached_scattering(images, files, "train", lines.append), first)
    assert len(lines) == 1
    monkeypatch.undo()
    monkeypatch.setenv("DPREPRO_CACHE_DIR", str(tmp_path))
    np.save(cached, np.zeros_like(first))                       # damaged: its hash no longer matches
    again = features.cached_scattering(images, files, "train", lines.append)
    np.testing.assert_array_equal(again, first)
    assert "does not match its recorded SHA-256" in lines[1]
    assert features.cache_key(files, "train", 16) != features.cache_key(files, "train", 15)


def test_group_normalisation_standardises_each_example_within_each_group():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (4, 7, 7, 81)).astype(np.float32) * np.arange(1, 82, dtype=np.float32)
    y = features.group_normalized(x, 27)
    groups = y.reshape(4, 49, 27, 3)
    np.testing.assert_allclose(groups.mean(axis=(1, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(groups.var(axis=(1, 3)), 1, atol=1e-3)
    np.testing.assert_array_equal(features.group_normalized(x[1:2], 27)[0], y[1])   # per example


def scatternet_spec(model="scatternet_cnn", **privacy):
    raw = raw_spec("smoke")
    raw["data"].update(features="scatternet", normalization="group", norm_groups=27)
    raw["model"].update(name=model, activation="tanh")
    raw["training"]["batch_size"] = 8
    raw["privacy"].update(num_microbatches=8, **privacy)
    return typed(raw, "scatternet")


@pytest.mark.parametrize("model", ["scatternet_cnn", "scatternet_linear"])
def test_fast_step_on_scatternet_features_equals_tf_privacy_per_example_step(images, model):
    """The fast engine's per-example clipping on the ScatterNet heads (an 81-channel 3x3 stride-2
    first convolution; a 3,969-input Dense) gives tf-privacy's DPSequential step (noise 0)."""
    from dprepro.training import engines as engine

    spec = scatternet_spec(model, noise_multiplier=0.0, l2_norm_clip=0.05)
    x = features.group_normalized(features.scattering(images[:8]), 27)
    y = np.eye(10, dtype=np.float32)[np.arange(8)]
    engine.seed_everything(0)
    start = engine.build_model(spec, "fast")
    start.build((None, 7, 7, 81))
    weights = start.get_weights()
    after = {}
    for name in ("fast", "vectorized"):
        engine.seed_everything(0)
        m = engine.build_model(spec, name)
        m.build((None, 7, 7, 81))
        m.set_weights(weights)
        m.train_on_batch(x, y)
        after[name] = m.get_weights()
    assert max(float(np.abs(a - w).max()) for a, w in zip(after["fast"], weights)) > 1e-4
    for f, v in zip(after["fast"], after["vectorized"]):
        np.testing.assert_allclose(f, v, atol=1e-6, rtol=0)


def test_load_data_gives_the_model_its_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("DPREPRO_CACHE_DIR", str(tmp_path))
    spec = scatternet_spec()
    data = features.load_data(spec, DATA, train_examples=20, test_examples=10)
    assert data.x_train.shape == (20, 7, 7, 81) and data.x_test.shape == (10, 7, 7, 81)
    assert data.y_train.shape == (20, 10)
    pixels = features.load_data(typed(raw_spec("smoke"), "s"), DATA, train_examples=20, test_examples=10)
    assert pixels.x_train.shape == (20, 28, 28, 1)
    np.testing.assert_array_equal(pixels.y_train, data.y_train)


@pytest.mark.long
def test_a_scatternet_spec_runs_and_its_model_evaluates_exactly(write_spec, tmp_path):
    """`dprepro run` on a ScatterNet spec (smoke scale): features computed (and cached), the head
    trained with DP-SGD, and `dprepro evaluate` rebuilds it on the same features: EXACT."""
    from conftest import run_cli

    raw = raw_spec("smoke")
    raw.update(name="smoke-scatternet")
    raw["data"].update(features="scatternet", normalization="group", norm_groups=27)
    raw["model"].update(name="scatternet_cnn", activation="tanh")
    raw["training"].update(momentum=0.9)
    spec = write_spec(raw, "smoke-scatternet.yaml")
    env = {"DPREPRO_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_cli("run", spec, "--out", tmp_path, "--logdir", tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ScatterNet of the 2500 train images" in proc.stderr
    result = json.loads((tmp_path / "smoke-scatternet" / "v1" / "result.json").read_text())
    assert result["spec"]["data"]["features"] == "scatternet" and result["test_accuracy"]["mean"] > 0.2
    evaluated = run_cli("evaluate", tmp_path / "smoke-scatternet" / "v1" / "result.json", env=env)
    assert evaluated.returncode == 0 and "EXACT" in evaluated.stdout, evaluated.stdout + evaluated.stderr
    assert "ScatterNet of" not in evaluated.stderr                  # the cached features
    audit = run_cli("audit", spec, "--out", tmp_path / "audit", env=env)   # not built for features yet: said
    assert audit.returncode == 2 and audit.stderr.strip().splitlines()[-1] == (
        f"{spec}: data.features: the audit puts canary images into the training set and does not turn them "
        f"into scatternet features yet; audit a spec trained on pixels")
    assert not (tmp_path / "audit").exists()
