"""`dprepro evaluate RESULT`: the saved model of every seed, re-evaluated on the test set.

Each seed's model.npz is looked for where the run wrote it (the recorded path), then beside the
result (RESULT's folder/seed-<k>/model.npz: where pinned results ship their models, whatever
folder they were trained in); it is checked against the SHA-256 in the result, rebuilt from the result's spec
(model.load_model) and evaluated as training evaluated it (batches of 1,000, op determinism on).
On the arithmetic path of the run the loss and accuracy are the recorded ones exactly; on another
path they may differ in the last bits, which the output says.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping

from dprepro.errors import InputError
from dprepro.records.read import load_result
from dprepro.records.result import Result, SeedOutcome


def seed_models(result: Result, path) -> list[tuple[SeedOutcome, Path]]:
    """(seed outcome, model file) for every seed, or InputError naming the field."""
    out = []
    for i, seed in enumerate(result.seeds):
        model = seed.get("model")
        if not isinstance(model, Mapping) or not isinstance(model.get("path"), str):
            raise InputError(f"{path}: seeds[{i}].model: no saved model recorded (results made before "
                             f"dprepro 0.4, such as the pins, have none: `dprepro run` the spec to make them)")
        out.append((seed, Path(model["path"])))
    return out


def find_model(recorded: Path, result_path) -> Path:
    """The recorded model path if it exists, else the same seed folder beside the result file."""
    if recorded.is_file():
        return recorded
    beside = Path(result_path).parent / recorded.parent.name / recorded.name
    return beside if beside.is_file() else recorded


def evaluate_result(path, data_dir) -> tuple[str, bool]:
    """The printed table and whether every seed's recorded test loss and accuracy came out exactly."""
    import tensorflow as tf

    from dprepro.features import load_data, standardized
    from dprepro.records.environment import this_machine
    from dprepro.training.model import load_model

    result = load_result(path)
    spec = result.spec
    models = seed_models(result, path)
    models = [(seed, find_model(model_path, path)) for seed, model_path in models]
    for i, (seed, model_path) in enumerate(models):
        if not model_path.is_file():
            raise InputError(f"{model_path}: saved model of seeds[{i}] not found (nor beside the result, in "
                             f"{Path(path).parent / model_path.parent.name})")
        digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
        if digest != seed.get("model").get("sha256"):
            raise InputError(f"{model_path}: sha256 {digest[:12]}… is not the recorded {str(seed.get('model').get('sha256'))[:12]}…")
    data = load_data(spec, Path(data_dir), train_examples=0)
    tf.config.experimental.enable_op_determinism()
    here = this_machine()["arithmetic"]["id"]
    recorded = result.arithmetic
    lines = [f"{result.name} v{result.version}: {len(models)} saved model(s) on "
             f"{len(data.x_test)} test examples (arithmetic path here {here}, recorded {recorded})",
             f"  {'seed':>5}  {'recorded acc':>12}  {'evaluated':>10}  {'recorded loss':>13}  {'evaluated':>10}  status"]
    exact = True
    for seed, model_path in models:
        model = load_model(spec, model_path)
        x_test = data.x_test
        if spec.data.normalization == "private":        # the seed's own released statistics
            if not isinstance(seed.get("normalization"), Mapping):
                raise InputError(f"{path}: seeds[{models.index((seed, model_path))}].normalization: "
                                 f"the released statistics are missing")
            x_test = standardized(x_test, seed.get("normalization"))
        loss, acc = model.evaluate(x_test, data.y_test, batch_size=1000, verbose=0)
        same = acc == seed.test_accuracy and loss == seed.test_loss
        exact &= same
        recorded_loss = float("nan") if seed.test_loss is None else seed.test_loss
        lines.append(f"  {seed.seed:>5}  {seed.test_accuracy:>12.6f}  {acc:>10.6f}  "
                     f"{recorded_loss:>13.6f}  {loss:>10.6f}  {'EXACT' if same else 'DIFFERS'}")
    if not exact:
        lines.append("  differences are expected only on another arithmetic path" if here != recorded
                     else "  same arithmetic path: a difference means the model or the code changed")
    return "\n".join(lines), exact
