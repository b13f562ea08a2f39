"""Spec validation: every shipped spec is valid; every kind of mistake is one precise line, exit 2."""

import pytest

from conftest import EXPERIMENTS, raw_spec, run_cli
from dprepro.errors import InputError
from dprepro.spec import load_spec, validate

SHIPPED = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))


def test_the_shipped_specs():
    assert SHIPPED == ["abadi-pca-mlp-large-noise", "abadi-pca-mlp-large-noise-poisson", "abadi-pca-mlp-medium-noise",
                       "abadi-pca-mlp-medium-noise-poisson", "abadi-pca-mlp-small-noise",
                       "abadi-pca-mlp-small-noise-poisson", "dpsur-every-step-eps1", "dpsur-every-step-eps2",
                       "dpsur-every-step-eps3", "dpsur-every-step-eps4", "dpsur-published-eps1", "dpsur-published-eps2",
                       "dpsur-published-eps3", "dpsur-published-eps4",
                       "keras-script-20ep", "nonprivate-3ep", "papernot-cnn-relu", "papernot-cnn-relu-poisson",
                       "smoke", "tramer-boneh-cnn-tanh", "tramer-boneh-cnn-tanh-poisson",
                       "tramer-boneh-scatternet-cnn", "tramer-boneh-scatternet-cnn-poisson",
                       "tramer-boneh-scatternet-linear", "tramer-boneh-scatternet-linear-poisson",
                       "tuned-cnn-tanh-eps3", "tuned-cnn-tanh-large-batch-refit-eps3", "tuned-cnn-tanh-refit-eps3",
                       "tuned-frontier-eps3", "tuned-frontier-eps8", "tuned-frontier-v2-eps0.5", "tuned-frontier-v2-eps2",
                       "tuned-scatternet-linear-ema-eps1", "tuned-scatternet-linear-ema-eps2", "tuned-scatternet-linear-eps0.5", "tuned-scatternet-linear-eps1", "tuned-scatternet-linear-eps2",
                       "tuned-scatternet-linear-eps3", "tuned-scatternet-linear-eps4", "tuned-scatternet-linear-eps8",
                       "tuned-scatternet-linear-refined-eps3", "tuned-scatternet-linear-refined-refit-eps3",
                       "tutorial-15ep", "tutorial-15ep-poisson", "tutorial-1ep",
                       "tutorial-3ep", "tutorial-3ep-poisson", "tutorial-5ep"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spec_is_valid(name):
    spec = load_spec(EXPERIMENTS / f"{name}.yaml")
    assert spec.name == name and spec.version >= 1
    assert len(spec.seeds) == (1 if name == "smoke" else 3 if name.startswith(("abadi", "dpsur", "papernot", "tramer", "tuned")) else 5)


def test_tutorial_hyperparameters():
    s = load_spec(EXPERIMENTS / "tutorial-3ep.yaml").to_dict()
    assert s["training"] == {"epochs": 3, "batch_size": 250, "learning_rate": 0.25, "optimizer": "sgd",
                             "momentum": 0.0, "learning_rate_schedule": "constant", "final_learning_rate": None,
                             "decay_epochs": None, "ema_decay": None}
    assert s["model"] == {"name": "tutorial_cnn", "pooling": "max", "activation": "relu"}
    assert s["privacy"] == {"enabled": True, "l2_norm_clip": 1.5, "noise_multiplier": 1.3,
                            "num_microbatches": 250, "delta": 1e-5, "randomness": "reproducible",
                            "selective_update": None}
    assert s["engine"] == {"name": "fast", "use_xla": False}
    assert s["data"]["train_examples"] == 60000 and s["data"]["test_examples"] == 10000


def mutate(path, value, raw=None):
    raw = raw_spec("tutorial-3ep") if raw is None else raw
    *parents, last = path.split(".")
    node = raw
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


class _Delete:
    """The marker "remove this field" (its name in test ids, the same in every pytest process)."""

    def __repr__(self):
        return "DELETE"


DELETE = _Delete()
BAD = [
    # (field to change, new value, field named in the error, words in the error)
    ("training.epocs", 3, "training.epocs", "unknown field"),
    ("surprise", 1, "surprise", "unknown field"),
    ("training.epochs", "3", "training.epochs", "must be an integer"),
    ("training.learning_rate", "fast", "training.learning_rate", "must be a finite number"),
    ("training.optimizer", "adam", "training.optimizer", "unknown optimizer 'adam' (known: sgd)"),
    ("privacy.delta", "1e-5", "privacy.delta", "write 1.0e-5"),
    ("training.batch_size", 0, "training.batch_size", "must be positive"),
    ("training.batch_size", 70000, "training.batch_size", "larger than the training set"),
    ("privacy.num_microbatches", 0, "privacy.num_microbatches", "must be positive"),
    ("privacy.l2_norm_clip", -1.0, "privacy.l2_norm_clip", "must be positive"),
    ("privacy.num_microbatches", 240, "privacy.num_microbatches", "not divisible"),
    ("training.epochs", 0, "training.epochs", "integer from 1 to 10000"),
    ("training.epochs", 10 ** 5, "training.epochs", "integer from 1 to 10000"),
    ("seeds", [2 ** 31], "seeds", "from 0 to 2147483647"),
    ("privacy.noise_multiplier", 10 ** 400, "privacy.noise_multiplier", "integer of 401 digits"),
    ("training.learning_rate", 1e7, "training.learning_rate", "at most 1e+06"),
    ("training.epochs", 1.5, "training.epochs", "must be an integer"),
    ("privacy.delta", 0.0, "privacy.delta", "(0, 1)"),
    ("privacy.delta", 1.0, "privacy.delta", "(0, 1)"),
    ("privacy.delta", 1 / 60000, "privacy.delta", "below 1/n = 1/60000 for the 60000 examples trained"),
    ("model.name", "resnet", "model.name", "unknown model"),
    ("engine.name", "turbo", "engine.name", "unknown engine"),
    ("engine.name", "none", "engine.name", "without privacy"),
    ("schema", 2, "schema", "unsupported schema"),
    ("version", DELETE, "version", "required field is missing"),
    ("seeds", [], "seeds", "non-empty list"),
    ("seeds", [1, 1], "seeds", "must not repeat"),
    ("data.train_examples", 0, "data.train_examples", "between 1 and 60000"),
    ("expected.accuracy", {"value": 1, "source": "x"}, "expected.accuracy", "unknown quantity"),
    ("data.sampling", "random", "data.sampling", "must be one of shuffle, poisson"),
    ("expected.epsilon_rdp", {"value": 1, "source": "x", "steps": "round"}, "expected.epsilon_rdp.steps",
     "must be one of trained, ceil, floor"),
    ("expected.epsilon_rdp", {"value": 1, "source": "x", "used_microbatching": 250},
     "expected.epsilon_rdp.used_microbatching", "must be true or false"),
    ("expected.test_accuracy", {"value": 1, "source": "x", "steps": "ceil"}, "expected.test_accuracy.steps",
     "only an epsilon"),
    ("model.activation", "sigmoid", "model.activation", "must be one of relu, tanh"),
    ("data.features", "sift", "data.features", "must be one of none, scatternet"),
    ("data.features", "scatternet", "model.name", "takes the pixels (data.features: none)"),
    ("model.name", "scatternet_cnn", "model.name", "takes ScatterNet features"),
    ("data.normalization", "batch", "data.normalization", "must be one of none, group"),
    ("data.normalization", "group", "data.normalization", "is for ScatterNet features"),
    ("data.norm_groups", 27, "data.norm_groups", "is for data.normalization: group"),
    ("data.norm_noise_multiplier", 8.0, "data.norm_noise_multiplier", "is for data.normalization: private"),
    ("data.pca_dimensions", 60, "data.pca_dimensions", "is for data.features: dp_pca"),
    ("data.features", "dp_pca", "data.pca_dimensions", "DP-PCA needs it, an integer from 1 to 784"),
    ("model.name", "pca_mlp", "model.name", "takes the DP-PCA projection"),
    ("training.momentum", 1.0, "training.momentum", "from 0 to below 1"),
    ("training.momentum", -0.1, "training.momentum", "from 0 to below 1"),
    ("training.learning_rate_schedule", "cosine", "training.learning_rate_schedule", "must be one of constant, linear"),
    ("training.learning_rate_schedule", "linear", "training.final_learning_rate", "required by learning_rate_schedule"),
    ("training.final_learning_rate", 0.1, "training.final_learning_rate", "the schedule is constant"),
    ("training.decay_epochs", 2, "training.decay_epochs", "the schedule is constant"),
]


@pytest.mark.parametrize("changes,named,words", [
    ({"final_learning_rate": -1.0}, "training.final_learning_rate", "from 0 to"),
    ({"final_learning_rate": 0.1, "decay_epochs": 4}, "training.decay_epochs", "from 1 to training.epochs (3)"),
    ({"final_learning_rate": 0.1, "decay_epochs": 0}, "training.decay_epochs", "from 1 to training.epochs (3)"),
])
def test_bad_linear_schedule_is_one_precise_line(changes, named, words):
    raw = mutate("training.learning_rate_schedule", "linear")
    for key, value in changes.items():
        raw = mutate(f"training.{key}", value, raw)
    with pytest.raises(InputError) as e:
        validate(raw, "x.yaml")
    assert str(e.value).startswith(f"x.yaml: {named}: ") and words in str(e.value), str(e.value)


@pytest.mark.parametrize("field,value", [("model.activation", "tanh"), ("training.momentum", 0.9),
                                          ("training.learning_rate_schedule", "linear"),
                                          ("data.normalization", "none"), ("data.features", "none")])
def test_new_options_keep_old_hashes_at_their_defaults_and_change_them_otherwise(field, value):
    """Fields added for the published setups (issue 21) are hash-neutral at their defaults, written
    or not: every pinned spec keeps its identity. Any other value is another experiment."""
    from dprepro.spec import Spec
    default = {"model.activation": "relu", "training.momentum": 0.0, "training.learning_rate_schedule": "constant",
               "data.normalization": "none", "data.features": "none"}[field]
    implicit = Spec.from_raw("a", raw_spec("tutorial-3ep"))
    explicit = Spec.from_raw("b", mutate(field, default))
    raw = mutate(field, value)
    if value == "linear":
        raw = mutate("training.final_learning_rate", 0.05, raw)
    if value == "none":             # the other value needs ScatterNet features and a head for them
        raw = mutate("data.features", "scatternet", raw)
        raw = mutate("model.name", "scatternet_linear", raw)
        if field == "data.normalization":
            raw = mutate("data.normalization", "group", raw)
            raw = mutate("data.norm_groups", 27, raw)
    assert implicit.sha256 == explicit.sha256 != Spec.from_raw("c", raw).sha256


@pytest.mark.parametrize("groups", [None, 0, 2, 82])
def test_group_normalisation_needs_groups_that_divide_the_81_channels(groups):
    raw = mutate("data.features", "scatternet")
    raw = mutate("model.name", "scatternet_cnn", raw)
    raw = mutate("data.normalization", "group", raw)
    raw = mutate("data.norm_groups", groups, raw)
    with pytest.raises(InputError, match=r"^x.yaml: data.norm_groups: .*dividing 81 \(1, 3, 9, 27, 81\)"):
        validate(raw, "x.yaml")


@pytest.mark.parametrize("field,value", [("norm_noise_multiplier", None), ("norm_clip_mean", 0.0),
                                          ("norm_clip_square", -1.0)])
def test_private_normalisation_needs_its_noise_and_clips(field, value):
    raw = mutate("data.features", "scatternet")
    raw = mutate("model.name", "scatternet_linear", raw)
    raw["data"].update(normalization="private", norm_noise_multiplier=8.0, norm_clip_mean=0.2, norm_clip_square=0.05)
    validate(raw, "x.yaml")
    raw["data"][field] = value
    with pytest.raises(InputError, match=rf"^x.yaml: data.{field}: private normalisation needs it, positive"):
        validate(raw, "x.yaml")


def test_linear_schedule_decays_then_holds():
    """Abadi et al.'s schedule: 0.1 to 0.052 over the first 10 epochs, then constant."""
    from dprepro.spec import Spec
    raw = raw_spec("tutorial-3ep")
    raw["training"].update(epochs=12, learning_rate=0.1, learning_rate_schedule="linear",
                           final_learning_rate=0.052, decay_epochs=10)
    spec = Spec.from_raw("x", raw)
    assert spec.decay_steps == 2400
    assert spec.learning_rate_at(0) == 0.1
    assert spec.learning_rate_at(1200) == pytest.approx(0.076, abs=1e-15)
    assert spec.learning_rate_at(2400) == spec.learning_rate_at(2879) == pytest.approx(0.052, abs=1e-15)
    assert Spec.from_raw("y", raw_spec("tutorial-3ep")).learning_rate_at(500) == 0.25


@pytest.mark.parametrize("field,value,named,words", BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_bad_spec_is_one_precise_line(field, value, named, words):
    with pytest.raises(InputError) as e:
        validate(mutate(field, value), "experiments/x.yaml")
    message = str(e.value)
    assert message.startswith(f"experiments/x.yaml: {named}: "), message
    assert words in message and "\n" not in message


@pytest.mark.parametrize("base,change,named,words", [
    ("smoke", {"privacy.num_microbatches": 50}, "privacy.num_microbatches", "one example per microbatch"),
    ("smoke", {"engine.name": "tutorial"}, "engine.name", "cannot train with poisson sampling"),
    ("nonprivate-3ep", {}, "data.sampling", "poisson sampling is for DP-SGD"),
])
def test_poisson_needs_one_example_per_microbatch_and_a_capable_engine(base, change, named, words):
    raw = mutate("data.sampling", "poisson", raw_spec(base))
    for field, value in change.items():
        raw = mutate(field, value, raw)
    with pytest.raises(InputError) as e:
        validate(raw, "x.yaml")
    assert str(e.value).startswith(f"x.yaml: {named}: ") and words in str(e.value), str(e.value)


def test_sampling_shuffle_is_the_default_and_keeps_the_content_hash():
    """Specs pinned before `data.sampling` existed keep their identity: `shuffle`, written or not,
    hashes as before; `poisson` is another experiment."""
    from dprepro.spec import Spec
    implicit = Spec.from_resolved("a", validate(raw_spec("tutorial-3ep"), "a"))
    assert implicit.sampling == "shuffle"
    explicit = Spec.from_resolved("b", validate(mutate("data.sampling", "shuffle", raw_spec("tutorial-3ep")), "b"))
    poisson = Spec.from_resolved("c", validate(mutate("data.sampling", "poisson", raw_spec("tutorial-3ep")), "c"))
    assert implicit.sha256 == explicit.sha256 != poisson.sha256
    assert implicit.sha256 == "57d3cbf36e9fd23a966b199f657118b72fbcad86e13aee38baa79f5aeada390c"  # pinned


def test_private_engine_needs_privacy():
    raw = raw_spec("nonprivate-3ep")
    raw["engine"]["name"] = "fast"
    with pytest.raises(InputError, match=r"^s.yaml: engine.name: .*privacy.enabled is false"):
        validate(raw, "s.yaml")


@pytest.mark.parametrize("name", SHIPPED)
def test_resolved_spec_validates_again(name):
    """`run` re-validates the resolved spec with its overrides; that must accept every shipped spec."""
    spec = load_spec(EXPERIMENTS / f"{name}.yaml")
    assert spec.with_overrides(seeds=[7]).to_dict() == {**spec.to_dict(), "seeds": [7]}


def test_privacy_section_may_be_absent_for_a_nonprivate_spec():
    raw = raw_spec("nonprivate-3ep")
    del raw["privacy"]
    assert validate(raw, "s.yaml")["privacy"]["enabled"] is False


def test_not_yaml_is_one_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(InputError, match=r"broken.yaml: not valid YAML \(line \d+\)$"):
        load_spec(path)


def test_cli_bad_spec_exits_2_and_writes_nothing(write_spec, tmp_path):
    path = write_spec(mutate("privacy.num_microbatches", 7), "bad.yaml")
    out = tmp_path / "out"
    for command in (["validate", path], ["run", path, "--out", out, "--logdir", out],
                    ["epsilon", path]):
        proc = run_cli(*command)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == (f"{path}: privacy.num_microbatches: batch_size 250 is not "
                                       f"divisible by 7"), proc.stderr
        assert not out.exists()


def test_cli_run_validates_every_spec_before_training(write_spec, tmp_path):
    good = EXPERIMENTS / "smoke.yaml"
    bad = write_spec(mutate("training.epochs", 0), "bad.yaml")
    out = tmp_path / "out"
    proc = run_cli("run", good, bad, "--out", out, "--logdir", out)
    assert proc.returncode == 2 and "bad.yaml: training.epochs:" in proc.stderr
    assert not out.exists()


def test_cli_validate_ok():
    proc = run_cli("validate", *sorted(EXPERIMENTS.glob("*.yaml")))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(": ok (") == len(SHIPPED)


def test_content_hash_follows_content():
    a = validate(raw_spec("smoke"), "a")
    from dprepro.spec import Spec
    same = Spec.from_resolved("b", validate(raw_spec("smoke"), "b"))
    changed_raw = raw_spec("smoke")
    changed_raw["training"]["learning_rate"] = 0.2
    assert Spec.from_resolved("a", a).sha256 == same.sha256
    assert Spec.from_resolved("c", validate(changed_raw, "c")).sha256 != same.sha256
    prose_raw = raw_spec("smoke")
    prose_raw["description"] = "reworded"
    prose_raw["expected"] = {"test_accuracy": {"value": 0.3, "source": "x"}}
    assert Spec.from_resolved("d", validate(prose_raw, "d")).sha256 == same.sha256
