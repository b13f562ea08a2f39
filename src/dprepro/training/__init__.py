"""Training: the model, the engines that train it with DP-SGD, and one spec's run end to end.

- `model`: the tutorial's CNN as fresh Keras layers; saving and loading trained weights;
- `engines`: the model wrapped for each engine (tutorial, fast, vectorized, none);
- `fast_dp`: the `fast` engine's DP-SGD step (one forward and one backward pass);
- `fit`: one seed trained (batches, resume, Keras's fit loop), its outcome;
- `callbacks`: progress record, per-epoch line, TensorBoard log;
- `checkpoint`: per-epoch checkpoints for an exact resume;
- `pipeline`: plan -> train -> assemble for one spec (`dprepro run`);
- `evaluate`: the saved models of a result re-evaluated (`dprepro evaluate`).
"""
