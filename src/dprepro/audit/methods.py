"""How an audit was made, as audit.json records it under `method`: the canaries, their inclusion,
the score, the guesses, the bound and, for the membership inference, the non-members."""

from __future__ import annotations

from dprepro.audit import bounds, canaries as canary_set, whitebox

BOUND_TEXT = ("Steinke, Nasr, Jagielski (NeurIPS 2023), Theorem 3.1 with delta (the verdict's); beside it, from "
              "the same guesses, Mahloujifar, Melis, Chaudhuri (ICML 2025)'s f-DP bound refuting mu-GDP, as "
              "epsilon at delta (assumes a Gaussian trade-off curve); each Bonferroni-corrected over the k tried "
              "and the seeds")


def method(m: int, kind: str, confidence: float) -> dict:
    """How the audit was made, as audit.json records it."""
    return {
        "canaries": m, "kind": kind,
        "source": (f"the last {m} MNIST test images, each with a fixed wrong label" if kind == "mislabelled"
                   else f"{m} random binary images (pixels on with probability {canary_set.PIXEL_ON}), random labels"),
        "inclusion": "each canary in the training set with probability 1/2, independently (per seed)",
        "score": "logit margin: log p(canary's label) - max over the other classes of log p "
                 "under the trained model (black box)",
        "guesses": f"IN for the k highest scores, OUT for the k lowest, k in {bounds.guess_counts(m)}",
        "bound": BOUND_TEXT,
        "confidence": confidence}


def white_box_method(m: int, confidence: float) -> dict:
    """How a white-box audit was made, as audit.json records it."""
    return {
        "canaries": m, "kind": "gradient (white box)",
        "source": f"{m} sparse random unit directions in parameter space ({whitebox.SUPPORT} coordinates each, "
                  f"signs at random); each canary's gradient is {whitebox.NORM_IN_CLIPS:g} clips along its "
                  f"direction, clipped by the engine's own rule",
        "inclusion": "each canary in the training set with probability 1/2, independently (per seed); a canary in "
                     "the set joins each step like an example (Poisson, the spec's q)",
        "score": "sum over steps of the log-likelihood ratio of the residual's projection on the canary's "
                 "direction, in clips (in: N(1, s^2) with probability q, else N(0, s^2); s measured on each "
                 "step's residual); the residual is the noisy sum less the training examples' clipped sum, "
                 "which an auditor holding the iterates, the examples and their sampling computes",
        "threat_model": "the auditor knows every iterate, the training examples and which of them each step "
                        "sampled; only the noise and the canaries' coins and sampling are secret. DP-SGD's "
                        "epsilon holds against it (the subsampled Gaussian's analysis conditions on the others' "
                        "sample)",
        "guesses": f"IN for the k highest scores, OUT for the k lowest, k in {bounds.guess_counts(m)}",
        "bound": BOUND_TEXT,
        "confidence": confidence}


def membership_method(held_out: int, trained: int) -> dict:
    return {"membership": (f"members: the {trained} training examples; non-members: {held_out} images of the "
                           f"training file drawn at random (each seed its own public draw), never trained on "
                           f"(the same distribution); " if held_out else
                           "members: the training examples; non-members: the test images (a harder-to-fit "
                           "distribution: AUC below 0.5 is that shift, not privacy); ")
                          + "score: log-probability of the true label",
            "held_out": held_out}
