"""Sweeps: one base experiment spec, a grid over its fields, every cell an ordinary spec run on Ray.

- `sweep_spec`: read and validate a sweep file; expand it into cells (ordinary experiment specs,
  each with its own name, version and content hash; target epsilons calibrated to noise multipliers);
- `ray_runner`: one Ray task per (cell, seed), locally or on a cluster; resumable; a summary at the end.
The frontier table and figure made from the cells' results are records (records/frontier.py).
"""
