"""Empirical privacy auditing: an epsilon lower bound measured beside the accountant's upper bound.

The stage has ten parts, one module each:
- `canaries`: which inputs are inserted, which of them are in the training set (a fair coin each);
- `whitebox`: gradient canaries in the DP-SGD step, scored from every step's noisy sum;
- `audited_step`: the fast step with an audit's canaries and planted bug, a subclass kept out of the engine;
- `bounds`: the one-run lower bound of Steinke, Nasr and Jagielski (NeurIPS 2023) from the
  canaries' scores;
- `fdp`: the f-DP one-run bound of Mahloujifar, Melis and Chaudhuri (ICML 2025) from the same guesses;
- `membership`: membership inference on ordinary data (ROC, AUC, TPR at low FPR, advantage);
- `held_out`: the membership inference's non-members, training images kept out (a public draw per seed);
- `methods`: how an audit was made, as audit.json records it;
- `audit_run`: train once with the canaries, score, bound, check, write audit.json;
- `figure`: the ROC curves in log-log scale with the (epsilon, delta) region drawn on them.
"""

import enum


class PlantedBug(enum.Enum):
    """A broken DP-SGD step an audit trains while keeping the spec's claim (its bug check must fire);
    audited_step.AuditedStep breaks the step. Here, without TensorFlow, so that the command line can
    offer them."""

    NOISE_HALF = "noise-half"
    NOISE_OFF = "noise-off"
    CLIP_OFF = "clip-off"
    NOISE_AND_CLIP_OFF = "noise-and-clip-off"

    @property
    def noise_factor(self) -> float:
        return {"noise-half": 0.5, "noise-off": 0.0, "noise-and-clip-off": 0.0}.get(self.value, 1.0)

    @property
    def clips(self) -> bool:
        return self not in (PlantedBug.CLIP_OFF, PlantedBug.NOISE_AND_CLIP_OFF)


PLANTED_BUGS = tuple(bug.value for bug in PlantedBug)   # `--plant-bug`'s choices
