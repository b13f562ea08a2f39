"""dprepro: reproduce the TensorFlow Privacy DP-SGD MNIST tutorial from versioned specs.

Importing the package loads nothing heavy; TensorFlow is imported by the modules that train.
Stages, top to bottom of the import graph (a stage imports only the ones above it):
files, errors -> spec/ -> data, sampling, accounting -> records/ (result files: write, read,
environment, compare, frontier, report) -> training/ (model, engines, fast_dp, fit, callbacks,
checkpoint, pipeline, evaluate) -> audit/, sweep/ -> bench -> cli.
"""

__version__ = "0.6.0"
