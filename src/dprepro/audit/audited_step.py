"""What an audit adds to the `fast` engine's DP-SGD step, kept out of the engine that ships.

`audit(model, canaries, bug)` turns a built FastDPSequential into an AuditedStep: the same step with a
white-box audit's gradient canaries joining the clipped sum before the noise (and the residual shown
to the auditor after it), and/or a planted bug. FastDPSequential itself has no audit state: its
clipping, noise and mean are overridable parts (`clip_factors`, `applied_clip`, `noisy_mean`), and this
subclass overrides them. The arithmetic of an audited correct step is the engine's, operation for
operation (the white-box pins recompute to the same bounds).
"""

from __future__ import annotations

import tensorflow as tf

from dprepro.audit import PlantedBug
from dprepro.training.fast_dp import FastDPSequential


class AuditedStep(FastDPSequential):
    """The fast step with an audit's canaries (audit/whitebox.py GradientCanaries, or None) and bug."""

    canaries = None
    bug: PlantedBug | None = None

    def plant(self, bug: PlantedBug | None) -> None:
        """Break this step as `bug` says (the ledger then records what the broken step applied)."""
        self.bug = bug
        if bug is not None:
            self.noise_multiplier *= bug.noise_factor

    def clip_factors(self, norms: tf.Tensor) -> tf.Tensor:
        if self.bug is not None and not self.bug.clips:
            return tf.ones_like(norms)
        return super().clip_factors(norms)

    def applied_clip(self) -> float | None:
        return None if self.bug is not None and not self.bug.clips else super().applied_clip()

    def noisy_mean(self, grads: list) -> list:
        """The canaries sampled this step join the clipped sum before the noise; the auditor is shown
        the noisy sum less the training examples' clipped sum."""
        if self.canaries is None:
            return super().noisy_mean(grads)
        noisy = self.noisy_sum(self.canaries.inject(grads, self.optimizer.iterations, self.clip_factors))
        self.canaries.observe([n - g for n, g in zip(noisy, grads)])
        return self.mean_of(noisy)


def audit(model: FastDPSequential, canaries=None, bug: PlantedBug | None = None) -> AuditedStep:
    """The model, built by the engine, made an AuditedStep with `canaries` and `bug` (in place: fit.train
    holds it)."""
    model.__class__ = AuditedStep
    model.canaries = canaries
    model.plant(bug)
    return model
