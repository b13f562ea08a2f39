"""Empirical privacy auditing: an epsilon lower bound measured beside the accountant's upper bound.

The stage has five parts, one module each:
- `canaries`: which inputs are inserted, which of them are in the training set (a fair coin each);
- `bounds`: the one-run lower bound of Steinke, Nasr and Jagielski (NeurIPS 2023) from the
  canaries' scores;
- `membership`: membership inference on ordinary data (ROC, AUC, TPR at low FPR, advantage);
- `audit_run`: train once with the canaries, score, bound, check, write audit.json;
- `figure`: the ROC curves in log-log scale with the (epsilon, delta) region drawn on them.
"""
