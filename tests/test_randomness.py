"""`privacy.randomness` (sampling.SecretKey, training/fit.draw_key): reproducible runs redraw the
same sampling and noise from the recorded seed; secret runs draw them from the operating system's
entropy, never write the key (only the checkpoint holds it), and resume with it exactly."""

import json
import secrets

import numpy as np
import pytest

from conftest import DATA, first_examples, raw_spec, typed
from dprepro import accounting
from dprepro.errors import InputError
from dprepro.sampling import SecretKey
from dprepro.training import checkpoint, pipeline
from dprepro.training.fit import train


def secret_raw(name="smoke-secret", sampling="poisson", epochs=2):
    raw = raw_spec()
    raw["name"] = name
    raw["data"].update(train_examples=1000, test_examples=500, sampling=sampling)
    raw["training"].update(epochs=epochs, batch_size=100)
    raw["privacy"].update(num_microbatches=100, randomness="secret")
    return raw


def test_secret_needs_the_fast_engine_and_a_private_spec():
    raw = secret_raw(sampling="shuffle")
    raw["engine"]["name"] = "vectorized"
    with pytest.raises(InputError, match=r"privacy\.randomness: secret needs engine fast"):
        typed(raw)
    raw["privacy"]["randomness"] = "random"
    with pytest.raises(InputError, match=r"privacy\.randomness: must be one of reproducible, secret, got 'random'"):
        typed(raw)


def test_the_epsilon_block_says_who_can_regenerate_the_draws():
    secret = accounting.epsilon_block(typed(secret_raw()))["randomness"]
    raw = secret_raw()
    raw["privacy"]["randomness"] = "reproducible"
    public = accounting.epsilon_block(typed(raw))["randomness"]
    assert secret["mode"] == "secret" and "nobody can regenerate them" in secret["statement"]
    assert public["mode"] == "reproducible" and "holds only against an adversary who does not know the seed" in public["statement"]


def test_the_key_never_shows():
    key = SecretKey()
    assert repr(key) == str(key) == "SecretKey(hidden)" and key.words.dtype == np.int64
    with pytest.raises(TypeError):
        json.dumps({"key": key})


def test_two_secret_runs_of_one_seed_differ_and_a_reproducible_one_repeats(mnist):
    """One epoch (10 steps) each: its loss already tells the draws apart."""
    data = first_examples(mnist, 1000, 500)
    spec = typed(secret_raw(epochs=1))
    first, second = (train(spec, data, 0)[0]["history"]["train_loss"] for _ in range(2))
    assert first != second                                    # fresh entropy each time, same seed
    raw = secret_raw(epochs=1)
    raw["privacy"]["randomness"] = "reproducible"
    again = [train(typed(raw), data, 0)[0]["history"]["train_loss"] for _ in range(2)]
    assert again[0] == again[1] and again[0] not in (first, second)


def test_a_secret_run_resumes_with_its_key_exactly(mnist, tmp_path):
    """Kill after epoch 1 (here: the epoch-1 checkpoint kept), resume: the same as not stopping, which
    only holds if the checkpoint carried the key (a new key would draw other batches and noise)."""
    data = first_examples(mnist, 1000, 500)
    spec = typed(secret_raw())
    ident = checkpoint.identity(spec.sha256, "fast", 5, 0)
    saved = {}

    def keep_first(done, model, state, secret):
        if done == 1:
            checkpoint.save(tmp_path, ident, done, model.get_weights(), model.optimizer.get_weights(), state, secret)
            saved["words"] = secret
    whole, model = train(spec, data, 0, on_epoch=keep_first)
    resume = checkpoint.load(tmp_path, ident)
    assert np.array_equal(resume["secret"], saved["words"])
    resumed, model2 = train(spec, data, 0, resume=resume)
    assert resumed["history"] == whole["history"]
    for a, b in zip(model.get_weights(), model2.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_no_output_of_a_secret_run_holds_its_key(monkeypatch, tmp_path, write_spec):
    """Every file the run leaves (result, seed record, model, TensorBoard events) is searched for the
    key's words, in binary (both byte orders) and in decimal: none holds them, and the checkpoint,
    the one file that did, is gone."""
    drawn = []

    def recorded(bits):
        value = secrets.SystemRandom().getrandbits(bits)
        drawn.append(value - 2 ** 63)
        return value
    monkeypatch.setattr(secrets, "randbits", recorded)
    spec = typed(secret_raw(), str(write_spec(secret_raw(), "smoke-secret.yaml")))
    result, path = pipeline.run_spec(spec, DATA, tmp_path / "out", tmp_path / "logs")
    assert len(drawn) == 2 and result["epsilon"]["randomness"]["mode"] == "secret"
    needles = []
    for word in drawn:
        needles += [np.int64(word).tobytes(), np.int64(word).byteswap().tobytes(), str(word).encode(),
                    str(word % 2 ** 64).encode()]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 4 and not list(tmp_path.rglob(checkpoint.FILE))
    for p in written:
        content = p.read_bytes()
        assert not [n for n in needles if n in content], p


def test_secret_noise_is_the_accountants_gaussian_from_several_draws():
    """Issue 34, finding 1: under secret randomness each coordinate's noise is the sum of SECRET_DRAWS
    draws scaled back (fast_dp.secret_normal). Its distribution must still be the accountant's
    N(0, (clip * noise)^2): over 10^6 coordinates the sample std within 0.5 % (its standard error is
    0.07 %), the mean within 0.005 std (se 0.001), the excess kurtosis within 0.03 (se 0.005). And the
    engine's step uses it: its noise is not the single draw of the reproducible mode's stream under the
    same key (on main before issue 34 it was exactly that draw)."""
    import tensorflow as tf
    from scipy import stats

    from dprepro.sampling import SecretKey, stream_seed
    from dprepro.training import engines
    from dprepro.training.fast_dp import secret_normal

    key, std = SecretKey(), 1.5 * 1.3
    z = secret_normal([1_000_000], key, tf.constant(7, tf.int64), 0, std).numpy()
    assert np.std(z) == pytest.approx(std, rel=5e-3)
    assert abs(np.mean(z)) < 0.005 * std and abs(stats.kurtosis(z)) < 0.03
    model = engines.build_model(typed(secret_raw()), seed=key)
    step = model.optimizer.iterations
    noise = model.noisy_sum([tf.zeros([1000, 100])])[0].numpy()
    single = tf.random.stateless_normal([1000, 100], stream_seed(key, "noise", step, 0), stddev=std, alg="philox")
    assert np.std(noise) == pytest.approx(std, rel=0.02) and not np.allclose(noise, single.numpy())


def test_seeds_given_to_a_secret_run_are_said_to_set_the_initialisation_only(write_spec, tmp_path):
    """Issue 34, finding 1: a seed on the command line cannot make a secret run's noise reproducible; one
    line says what it does."""
    from conftest import run_cli_in_process

    spec = write_spec(secret_raw(epochs=1), "smoke-secret.yaml")
    proc = run_cli_in_process("run", spec, "--seeds", "3", "--out", tmp_path, "--logdir", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = [line for line in proc.stderr.splitlines() if "privacy.randomness secret: --seeds 3" in line]
    assert len(said) == 1 and "weight initialisation only" in said[0]
