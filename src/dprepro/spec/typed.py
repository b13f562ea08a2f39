"""The typed spec: one frozen dataclass per section, built once from a validated mapping.

Every stage reads fields (`spec.training.batch_size`), never keys. The quantities derived from
several fields (steps per epoch, steps trained, the sampling rate q, examples per microbatch, the
padded Poisson batch) are computed here and nowhere else. A changed spec is made by `replace`,
which validates again; an audit's training spec by `audit_twin`, the one named exception to the
schema's limits. `to_dict()` gives back the resolved mapping exactly (results store it, the content
hash is computed from it), so a typed spec and the mapping it came from have the same identity.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from types import MappingProxyType

from dprepro.errors import InputError
from dprepro.spec.schema import HASH_NEUTRAL, NOT_HASHED, SECTIONS, TOP, UNCLIPPED, validate

PAD_MULTIPLE = 8   # Poisson: padded batches have a multiple of this many rows


@dataclass(frozen=True)
class DataSection:
    dataset: str
    sampling: str                # "shuffle" or "poisson"
    train_examples: int
    test_examples: int
    url: str | None
    features: str = "none"       # or "scatternet" (features.py)
    normalization: str = "none"  # "group" (per example, free) or "private" (noisy statistics, accounted)
    norm_groups: int | None = None
    norm_noise_multiplier: float | None = None   # private: noise std over each statistic's clip
    norm_clip_mean: float | None = None          # private: clip of each example's channel-mean vector
    norm_clip_square: float | None = None        # private: clip of each example's channel second-moment vector
    pca_dimensions: int | None = None            # dp_pca: the projection's dimensions (Abadi et al.: 60)
    pca_noise_multiplier: float | None = None    # dp_pca: noise std on the covariance of unit-norm images
    validation_examples: int | None = None       # held out of training: the training file's last this many
    #                                              (for tuning; never trained on, never the test set)


@dataclass(frozen=True)
class ModelSection:
    name: str
    pooling: str
    activation: str = "relu"     # of every hidden layer: relu (the tutorial) or tanh (Papernot et al. 2021)


@dataclass(frozen=True)
class TrainingSection:
    epochs: int
    batch_size: int              # shuffled: every batch; Poisson: the expected batch size q * n
    learning_rate: float
    optimizer: str
    momentum: float = 0.0        # SGD (heavy-ball) momentum; 0: plain SGD
    learning_rate_schedule: str = "constant"   # or "linear": to final_learning_rate over decay_epochs
    final_learning_rate: float | None = None
    decay_epochs: int | None = None            # linear: epochs of decay (default all), then constant
    ema_decay: float | None = None             # an average of the parameters, released (training/averaging.py)


@dataclass(frozen=True)
class SelectiveUpdate:
    """DPSUR's test of each step (spec/selective.py, training/selective.py)."""
    validation_batch_size: int           # expected size of each step's Poisson sample of training examples
    validation_clip: float               # C_v
    validation_noise_multiplier: float   # sigma_v: the test's noise std is 2 C_v sigma_v
    threshold: float                     # beta: keep the step when the noisy difference < beta C_v
    published_epsilon: float | None = None   # also score the model where Fu et al.'s accounting reaches this


@dataclass(frozen=True)
class PrivacySection:
    enabled: bool
    l2_norm_clip: float | None   # None only when not enabled
    noise_multiplier: float | None
    num_microbatches: int | None
    delta: float | None
    randomness: str = "reproducible"   # or "secret": sampling and noise from OS entropy, never written
    selective_update: SelectiveUpdate | None = None   # DPSUR; None: every step is kept

    def __post_init__(self):
        if isinstance(self.selective_update, dict):    # as `validate` resolved it
            object.__setattr__(self, "selective_update", SelectiveUpdate(**self.selective_update))


@dataclass(frozen=True)
class EngineSection:
    name: str
    use_xla: bool


@dataclass(frozen=True)
class Expected:
    """A published value the run is checked against, with its source and, for an epsilon, the
    convention it was computed under where that is not the run's own."""
    value: float
    source: str
    note: str | None = None
    steps: str | None = None               # step rule: trained, ceil or floor
    used_microbatching: bool | None = None

    def to_dict(self) -> dict:
        out = {"value": self.value, "source": self.source, "note": self.note}
        out.update({k: getattr(self, k) for k in ("steps", "used_microbatching") if getattr(self, k) is not None})
        return out


SECTION_TYPES = {"data": DataSection, "model": ModelSection, "training": TrainingSection,
                 "privacy": PrivacySection, "engine": EngineSection}


@dataclass(frozen=True)
class Spec:
    """A validated experiment spec. `path` is where it came from (for messages); `twin` says which
    audit twin it is (None for a spec as written)."""

    path: str
    schema: int
    name: str
    version: int
    description: str
    source: str
    data: DataSection
    model: ModelSection
    training: TrainingSection
    privacy: PrivacySection
    engine: EngineSection
    seeds: tuple
    expected: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    twin: str | None = None

    # ---- building -------------------------------------------------------------------------------
    @classmethod
    def from_resolved(cls, path: str, resolved: dict, twin: str | None = None) -> "Spec":
        """The typed view of a mapping that `validate` returned."""
        sections = {name: SECTION_TYPES[name](**resolved[name]) for name in SECTION_TYPES}
        expected = MappingProxyType({q: Expected(**e) for q, e in resolved["expected"].items()})
        return cls(path=str(path), schema=resolved["schema"], name=resolved["name"], version=resolved["version"],
                   description=resolved["description"], source=resolved["source"], seeds=tuple(resolved["seeds"]),
                   expected=expected, twin=twin, **sections)

    @classmethod
    def from_raw(cls, path, raw) -> "Spec":
        """Validate a raw mapping (from YAML, a result file or a sweep) and type it."""
        return cls.from_resolved(str(path), validate(copy.deepcopy(raw), str(path)))

    def to_dict(self) -> dict:
        """The resolved mapping, key for key as `validate` returns it."""
        out = {}
        for key in TOP:
            value = getattr(self, key)
            if key in SECTION_TYPES:
                value = dataclasses.asdict(value)
            elif key == "seeds":
                value = list(value)
            elif key == "expected":
                value = {q: e.to_dict() for q, e in value.items()}
            out[key] = value
        return out

    def replace(self, changes: dict, path: str | None = None) -> "Spec":
        """The spec with `changes` applied and validated again. Keys are top-level fields (`seeds`,
        `name`, `expected`, a whole section) or `section.field` (`privacy.noise_multiplier`)."""
        if self.twin:
            raise InputError(f"{self.path}: an audit twin ({self.twin}) is not a spec to change; make the twin "
                             f"from the changed spec")
        raw = self.to_dict()
        for key, value in changes.items():
            section, _, name = key.partition(".")
            if name:
                if section not in SECTIONS or name not in SECTIONS[section]:
                    raise InputError(f"{path or self.path}: {key}: not a field of a spec")
                raw[section][name] = copy.deepcopy(value)
            else:
                if key not in TOP:
                    raise InputError(f"{path or self.path}: {key}: not a field of a spec")
                raw[key] = copy.deepcopy(value)
        return Spec.from_resolved(path or self.path, validate(raw, path or self.path))

    def with_overrides(self, seeds=None, engine: str | None = None) -> "Spec":
        """The same spec with the command line's seeds and/or engine, validated again."""
        changes = {}
        if seeds is not None:
            changes["seeds"] = list(seeds)
        if engine is not None:
            changes["engine.name"] = engine
        return self.replace(changes) if changes else self

    def audit_twin(self, train_examples: int, clipping_and_noise: bool = True) -> "Spec":
        """The spec an audit trains and accounts: the training set grown to `train_examples` by the
        canaries put in (the accountant's n counts them) and, with `clipping_and_noise` False, noise 0
        and clipping off (the no-noise twin of the power check, and the planted bug). The only specs
        outside the schema's limits; they are never written as spec files."""
        raw = self.to_dict()
        raw["data"]["train_examples"] = train_examples
        extra = max(0, train_examples - self.train_examples)
        if not clipping_and_noise:
            raw["privacy"].update(noise_multiplier=0.0, l2_norm_clip=UNCLIPPED)
        what = f"{extra} canaries in" + ("" if clipping_and_noise else ", without noise and clipping")
        resolved = validate(raw, f"{self.path} (audit twin: {what})", extra_train_examples=extra,
                            unclipped=not clipping_and_noise)   # InputError: one line naming the field
        return Spec.from_resolved(self.path, resolved, twin=what)

    # ---- identity -------------------------------------------------------------------------------
    @property
    def sha256(self) -> str:
        """SHA-256 of what determines the results: the resolved spec without the prose fields
        and the published values (`description`, `source`, `expected`), as canonical JSON; fields
        added later are left out at their hash-neutral value (schema.HASH_NEUTRAL). Editing any
        other field changes it, and then `version` must be bumped."""
        content = {k: v for k, v in self.to_dict().items() if k not in NOT_HASHED}
        for (*sections, key), neutral in HASH_NEUTRAL.items():    # (section, key) or deeper
            holder = content
            for name in sections:
                holder = holder.get(name) if isinstance(holder, dict) else None
            if isinstance(holder, dict) and key in holder and holder[key] == neutral:
                del holder[key]
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    # ---- derived quantities (computed here only) --------------------------------------------------
    @property
    def private(self) -> bool:
        return self.privacy.enabled

    @property
    def sampling(self) -> str:
        return self.data.sampling

    @property
    def poisson(self) -> bool:
        return self.data.sampling == "poisson"

    @property
    def train_examples(self) -> int:
        return self.data.train_examples

    @property
    def steps_per_epoch(self) -> int:
        """Steps trained per epoch: floor(n / batch_size), shuffled or Poisson-sampled."""
        return self.data.train_examples // self.training.batch_size

    @property
    def steps_trained(self) -> int:
        """epochs * floor(n / batch_size): every step the run takes (the accountant counts these)."""
        return trained_steps(self.data.train_examples, self.training.batch_size, self.training.epochs)

    @property
    def q(self) -> float:
        """The sampling rate batch_size / n (each example's chance to be in a Poisson step)."""
        return self.training.batch_size / self.data.train_examples

    @property
    def selective(self) -> SelectiveUpdate | None:
        """DPSUR's test of each step (privacy.selective_update), or None."""
        return self.privacy.selective_update if self.private else None

    @property
    def microbatch_size(self) -> int:
        """Examples per microbatch (1 for a non-private spec, which has no microbatches)."""
        if not self.private:
            return 1
        return self.training.batch_size // self.privacy.num_microbatches

    @property
    def decay_steps(self) -> int | None:
        """Steps over which a linear schedule decays (None for a constant rate)."""
        t = self.training
        if t.learning_rate_schedule == "constant":
            return None
        return (t.decay_epochs or t.epochs) * self.steps_per_epoch

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of step `step` (counted from 0): constant, or linear from learning_rate
        to final_learning_rate over decay_steps, then final_learning_rate."""
        t = self.training
        if self.decay_steps is None:
            return t.learning_rate
        return t.learning_rate + (t.final_learning_rate - t.learning_rate) * min(step, self.decay_steps) / self.decay_steps

    @property
    def poisson_bucket(self) -> int | None:
        """A padded Poisson batch has the smallest multiple of this many rows that holds it (None for
        shuffled batches)."""
        return bucket_rows(self.data.train_examples, self.training.batch_size) if self.poisson else None


def trained_steps(n: int, batch_size: int, epochs: int) -> int:
    """epochs * floor(n / batch_size): the steps a run of `epochs` epochs takes (the last
    incomplete batch of each epoch dropped). The one formula; the accountant's "trained" rule uses it."""
    return epochs * (n // batch_size)


def bucket_rows(n: int, batch_size: int) -> int:
    """The width of the Poisson batch-size buckets: the standard deviation of the batch size
    (Binomial(n, batch_size / n)) rounded up to a multiple of PAD_MULTIPLE, at most n. A batch of
    k examples is padded to the next multiple of it: on average half a bucket of padding (about 3 %
    at batch 250), and a handful of distinct shapes over a run (each one trace under XLA)."""
    q = batch_size / n
    sd = math.sqrt(n * q * (1 - q))
    return min(n, PAD_MULTIPLE * max(1, math.ceil(sd / PAD_MULTIPLE)))
