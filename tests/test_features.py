"""ScatterNet features and their normalisation (features.py): shape, the properties that make them
free of privacy cost, the cache, and DP-SGD on them (the fast engine's step against tf-privacy's)."""

import json

import numpy as np
import pytest

from conftest import DATA, raw_spec, typed
from dprepro import features


@pytest.fixture(scope="module")
def images(mnist):
    return mnist.x_train[:16]


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


@pytest.mark.full
def test_a_scatternet_spec_runs_and_its_model_evaluates_exactly(write_spec, tmp_path):
    """`dprepro run` on a ScatterNet spec (smoke scale): features computed (and cached), the head
    trained with DP-SGD, and `dprepro evaluate` rebuilds it on the same features: EXACT. (The
    scattering of 2,500 images takes most of its 20 s: full tier.)"""
    from conftest import run_cli_in_process

    raw = raw_spec("smoke")
    raw.update(name="smoke-scatternet")
    raw["data"].update(features="scatternet", normalization="private", norm_noise_multiplier=8.0,
                       norm_clip_mean=0.2, norm_clip_square=0.05)
    raw["model"].update(name="scatternet_cnn", activation="tanh")
    raw["training"].update(momentum=0.9)
    spec = write_spec(raw, "smoke-scatternet.yaml")
    env = {"DPREPRO_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_cli_in_process("run", spec, "--out", tmp_path, "--logdir", tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ScatterNet of the 2500 train images" in proc.stderr
    result = json.loads((tmp_path / "smoke-scatternet" / "v1" / "result.json").read_text())
    assert result["spec"]["data"]["features"] == "scatternet" and result["test_accuracy"]["mean"] > 0.2
    assert len(result["seeds"][0]["normalization"]["mean"]) == 81             # the seed's release, kept
    block = result["epsilon"]
    assert len(block["releases"]) == 2 and not block["accountants"]["statement_once_per_epoch"]["holds_for_this_run"]
    assert "not what was released privately" in block["accountants"]["statement_once_per_epoch"]["label"]
    evaluated = run_cli_in_process("evaluate", tmp_path / "smoke-scatternet" / "v1" / "result.json", env=env)
    assert evaluated.returncode == 0 and "EXACT" in evaluated.stdout, evaluated.stdout + evaluated.stderr
    assert "ScatterNet of" not in evaluated.stderr                  # the cached features
    audit = run_cli_in_process("audit", spec, "--out", tmp_path / "audit", env=env)   # not built for features yet: said
    assert audit.returncode == 2 and audit.stderr.strip().splitlines()[-1] == (
        f"{spec}: data.features: the audit puts canary images into the training set and does not turn them "
        f"into scatternet features yet; audit a spec trained on pixels")
    assert not (tmp_path / "audit").exists()


def private_spec(clip_mean=0.2, clip_square=0.05, noise=8.0, n=50):
    raw = raw_spec("smoke")
    raw["data"].update(features="scatternet", normalization="private", norm_noise_multiplier=noise,
                       norm_clip_mean=clip_mean, norm_clip_square=clip_square, train_examples=n)
    raw["model"].update(name="scatternet_linear")
    raw["training"]["batch_size"] = 10
    raw["privacy"]["num_microbatches"] = 10
    return typed(raw, "private-norm")


@pytest.fixture(scope="module")
def fifty(mnist):
    return features.scattering(mnist.x_train[:50])


def test_private_statistics_without_noise_or_clipping_are_the_exact_ones(fifty):
    stats = features.private_statistics(fifty, private_spec(clip_mean=10.0, clip_square=10.0, noise=1e-12), 0)
    flat = fifty.reshape(50, -1, 81).astype(np.float64)
    mean, second = flat.mean(axis=1).mean(axis=0), (flat ** 2).mean(axis=1).mean(axis=0)
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats["var"], np.maximum(second - mean ** 2, 0), rtol=1e-6, atol=1e-12)
    assert stats["clipped_fraction"] == [0.0, 0.0]
    x = features.standardized(fifty, stats).reshape(50, -1, 81)
    live = np.array(stats["var"]) > 0
    np.testing.assert_allclose(x.mean(axis=(0, 1))[live], 0, atol=1e-3)


def test_private_statistics_noise_has_the_scale_the_accountant_assumes(fifty):
    """(released mean x n - clipped sum) / (noise x clip) over the 81 channels is N(0, 1): its
    standard deviation within 0.7-1.3 (the sample std of 81 normal values has sd 0.08: > 3.5 sigma);
    the same seed gives the same release, another seed another."""
    spec = private_spec(clip_mean=0.01, noise=3.0)
    flat = fifty.reshape(50, -1, 81).astype(np.float64).mean(axis=1)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    clipped_sum = (flat * np.minimum(1, 0.01 / norms)).sum(axis=0)
    stats = features.private_statistics(fifty, spec, 0)
    z = (np.array(stats["mean"]) * 50 - clipped_sum) / (3.0 * 0.01)
    assert 0.7 < z.std() < 1.3 and abs(z.mean()) < 0.5, (z.mean(), z.std())
    assert stats["clipped_fraction"][0] == 1.0                      # every example clipped at 0.01
    assert features.private_statistics(fifty, spec, 0) == stats
    assert features.private_statistics(fifty, spec, 1)["mean"] != stats["mean"]


def test_the_normalisation_in_slices_gives_the_whole_array_s_bits(fifty, monkeypatch):
    """The float64 temporaries are made a slice of examples at a time (features.SLICE, for memory):
    slices of 7 (not a divisor of 50) give exactly the release and the features of one slice of all,
    so the pins made before the slicing stand."""
    spec = private_spec()
    monkeypatch.setattr(features, "SLICE", 1000)
    whole = features.private_statistics(fifty, spec, 0)
    whole_x = features.standardized(fifty, whole)
    monkeypatch.setattr(features, "SLICE", 7)
    assert features.private_statistics(fifty, spec, 0) == whole
    assert features.standardized(fifty, whole).tobytes() == whole_x.tobytes()


def test_the_normalisation_release_is_composed_into_every_epsilon_that_can_count_it():
    """Two Gaussian releases (noise 8) before the training: rdp, rdp_legacy and pld grow by their
    composition (RDP: their order-a divergence a / 8^2 added, as Tramer & Boneh compose it);
    tf-privacy's statements cannot count them and do not hold; calibration accounts for them."""
    import dp_accounting
    from dprepro import accounting, calibration, mechanisms

    spec = private_spec(n=2500)
    plain = typed({**spec.to_dict(), "data": {**spec.to_dict()["data"], "normalization": "none",
                   "norm_noise_multiplier": None, "norm_clip_mean": None, "norm_clip_square": None,
                   "features": "scatternet"}}, "plain")
    with_release, without = accounting.epsilon_block(spec)["accountants"], accounting.epsilon_block(plain)["accountants"]
    for name in ("rdp", "rdp_legacy", "pld"):
        assert with_release[name]["epsilon"] > without[name]["epsilon"] and with_release[name]["counts_releases"]
    orders = mechanisms.RDP_ORDERS
    by_hand = dp_accounting.rdp.RdpAccountant(orders).compose(
        mechanisms.dpsgd_event(spec.q, spec.privacy.noise_multiplier, spec.steps_trained))
    by_hand._rdp = by_hand._rdp + np.array(orders) / 8.0 ** 2
    assert with_release["rdp"]["epsilon"] == pytest.approx(by_hand.get_epsilon(spec.privacy.delta), rel=1e-9)
    for name in ("statement_once_per_epoch", "statement_poisson"):
        assert not with_release[name]["holds_for_this_run"]
    sigma = calibration.calibrate(spec, 20.0, "rdp")
    calibrated = spec.replace({"privacy.noise_multiplier": sigma})
    reached = accounting.epsilon_block(calibrated)["accountants"]["rdp"]["epsilon"]
    assert 19.99 <= reached <= 20.0          # calibrate lands on the safe side, within its noise tolerance 1e-6
    assert sigma > calibration.calibrate(plain, 20.0, "rdp")        # the releases leave less budget to training


def pca_spec(noise=7.0, dimensions=10, n=200):
    raw = raw_spec("smoke")
    raw["data"].update(features="dp_pca", pca_dimensions=dimensions, pca_noise_multiplier=noise, train_examples=n)
    raw["model"].update(name="pca_mlp")
    raw["training"]["batch_size"] = 10
    raw["privacy"].update(num_microbatches=10, l2_norm_clip=4.0)
    return typed(raw, "dp-pca")


@pytest.fixture(scope="module")
def two_hundred(mnist):
    return mnist.x_train[:200]


def test_dp_pca_without_noise_is_the_top_principal_subspace(two_hundred):
    """At negligible noise the release spans the top eigenvectors of the unit-norm images'
    covariance (the same projector P P^T), with orthonormal columns of a fixed sign."""
    p = features.private_projection(two_hundred, pca_spec(noise=1e-9), 0)
    assert p.shape == (784, 10) and p.dtype == np.float32
    flat = two_hundred.reshape(200, -1).astype(np.float64)
    unit = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    values, vectors = np.linalg.eigh(unit.T @ unit)
    exact = vectors[:, np.argsort(values)[::-1][:10]]
    np.testing.assert_allclose(p @ p.T, exact @ exact.T, atol=1e-5)
    np.testing.assert_allclose(p.T @ p, np.eye(10), atol=1e-5)
    assert np.all(p[np.abs(p).argmax(axis=0), np.arange(10)] > 0)


def test_dp_pca_noise_moves_the_subspace_per_seed_and_is_composed(two_hundred):
    from dprepro import accounting

    spec = pca_spec(noise=7.0)
    a, b = features.private_projection(two_hundred, spec, 0), features.private_projection(two_hundred, spec, 1)
    np.testing.assert_array_equal(a, features.private_projection(two_hundred, spec, 0))
    assert np.abs(a @ a.T - b @ b.T).max() > 1e-2                 # 200 images against noise 7: visibly noisy
    block = accounting.epsilon_block(spec)
    assert [r["noise_multiplier"] for r in block["releases"]] == [7.0]
    assert "DP-PCA" in block["releases"][0]["mechanism"]


def test_fast_step_through_the_fixed_projection_equals_tf_privacy(two_hundred):
    """The projection is a non-trainable weight: the fast engine applies it as it is and clips the
    MLP's per-example gradients as tf-privacy does (noise 0); the projection does not move."""
    from dprepro.training import engines as engine

    spec = pca_spec().replace({"privacy.noise_multiplier": 0.0, "privacy.l2_norm_clip": 0.05})
    x, y = two_hundred[:10], np.eye(10, dtype=np.float32)[np.arange(10)]
    p = features.private_projection(two_hundred, spec, 0)
    after = {}
    for name in ("fast", "vectorized"):
        engine.seed_everything(0)
        m = engine.build_model(spec, name)
        m.build((None, 28, 28, 1))
        (layer,) = [l for l in m.layers if hasattr(l, "projection")]
        layer.projection.assign(p)
        before = [w.copy() for w in m.get_weights()]
        m.train_on_batch(x, y)
        after[name] = m.get_weights()
        np.testing.assert_array_equal(layer.projection.numpy(), p)
    assert max(float(np.abs(a - w).max()) for a, w in zip(after["fast"], before)) > 1e-4
    for f, v in zip(after["fast"], after["vectorized"]):
        np.testing.assert_allclose(f, v, atol=1e-6, rtol=0)


def test_a_dp_pca_spec_runs_and_evaluates_exactly(write_spec, tmp_path):
    """`dprepro run` on Abadi et al.'s setup at smoke scale (DP-PCA to 60 dimensions, MLP, linear
    learning-rate decay): the release is composed into the ε block, the projection travels in
    model.npz, and `dprepro evaluate` gives the recorded numbers exactly."""
    from conftest import run_cli_in_process

    raw = raw_spec("smoke")
    raw.update(name="smoke-dp-pca")
    raw["data"].update(features="dp_pca", pca_dimensions=60, pca_noise_multiplier=7.0)
    raw["model"].update(name="pca_mlp")
    raw["training"].update(learning_rate=0.1, learning_rate_schedule="linear", final_learning_rate=0.052)
    raw["privacy"].update(l2_norm_clip=4.0, noise_multiplier=4.0)
    spec = write_spec(raw, "smoke-dp-pca.yaml")
    proc = run_cli_in_process("run", spec, "--out", tmp_path, "--logdir", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "smoke-dp-pca" / "v1" / "result.json").read_text())
    assert len(result["epsilon"]["releases"]) == 1 and result["test_accuracy"]["mean"] > 0.3
    evaluated = run_cli_in_process("evaluate", tmp_path / "smoke-dp-pca" / "v1" / "result.json")
    assert evaluated.returncode == 0 and "EXACT" in evaluated.stdout, evaluated.stdout + evaluated.stderr


def test_a_target_the_releases_alone_exceed_is_said_in_one_line():
    from dprepro import calibration

    with pytest.raises(ValueError) as e:
        calibration.calibrate(private_spec(n=2500), 0.2, "rdp")
    assert "the 2 release(s) before training alone spend most of it" in str(e.value) and "\n" not in str(e.value)
