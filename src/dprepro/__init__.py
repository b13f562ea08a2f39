"""dprepro: reproduce the TensorFlow Privacy DP-SGD MNIST tutorial from versioned specs.

Importing the package loads nothing heavy; TensorFlow is imported by the modules that train.
Stages, one module each: spec -> data -> model -> engine -> accounting -> results -> report.
"""

__version__ = "0.5.0"
