"""Empirical privacy auditing: an epsilon lower bound measured beside the accountant's upper bound.

The stage has nine parts, one module each:
- `canaries`: which inputs are inserted, which of them are in the training set (a fair coin each);
- `whitebox`: gradient canaries in the DP-SGD step, scored from every step's noisy sum;
- `bounds`: the one-run lower bound of Steinke, Nasr and Jagielski (NeurIPS 2023) from the
  canaries' scores;
- `fdp`: the f-DP one-run bound of Mahloujifar, Melis and Chaudhuri (ICML 2025) from the same guesses;
- `membership`: membership inference on ordinary data (ROC, AUC, TPR at low FPR, advantage);
- `held_out`: the membership inference's non-members, training images kept out (a public draw per seed);
- `methods`: how an audit was made, as audit.json records it;
- `audit_run`: train once with the canaries, score, bound, check, write audit.json;
- `figure`: the ROC curves in log-log scale with the (epsilon, delta) region drawn on them.
"""

# The bugs `dprepro audit --plant-bug` can put into the fast engine's step (audit_run.plant); here,
# without TensorFlow, so that the command line can offer them.
PLANTED_BUGS = ("noise-half", "noise-off", "clip-off", "noise-and-clip-off")
