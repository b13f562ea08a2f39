"""Side-by-side speed of the engines on one spec's model and batch size, in one process.

Rows: the four engines, `fast-poisson` and `vectorized-poisson` (the engine's step on Poisson-sampled
batches padded to their fixed size, sampling included: what `data.sampling: poisson` costs), and
`anchor`, plain Keras as a user writes it without dprepro
(`tf.keras.Sequential` of the same layers, `tf.keras.optimizers.SGD`, batches sliced from in-memory
arrays as `model.fit(x, y)` slices them). Ratios are against the faster of `none` and `anchor`, so
a slow baseline cannot flatter the private engines.

Warm steps are timed by calling each model's compiled train function (the function `model.fit`
calls once per step) on an iterator of real MNIST batches; engines alternate within each
repetition so that machine load affects all alike; `tutorial` gets fewer steps (seconds per step).
Then, optionally, one real epoch of each row but `tutorial` through `model.fit` (the anchor's on the
arrays themselves), evaluation excluded, and a breakdown of the `fast` step into its phases.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import tensorflow as tf

from dprepro import sampling
from dprepro.features import load_data
from dprepro.records.environment import SIMULATED_PATHS, path_environ, this_machine
from dprepro.spec import ENGINE_VERSIONS, Spec
from dprepro.training import engines as engine
from dprepro.training.callbacks import EpochTimer
from dprepro.training.fast_dp import LayerGradients
from dprepro.training.model import build_layers
from dprepro.training.recorder import attach

BENCH_SCHEMA = 3
ROWS = ("anchor", "none", "fast", "fast-ledger", "fast-secret", "fast-poisson", "vectorized", "vectorized-poisson",
        "tutorial")
DEFAULT_ROWS = ("anchor", "none", "fast", "fast-poisson", "vectorized", "tutorial")
POISSON_STEPS = 10 ** 6   # the Poisson dataset's length: never exhausted by a benchmark
TIMING = "model.make_train_function() on an iterator of real MNIST batches"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(step, batches, steps: int) -> float:
    """Seconds per step over `steps` consecutive warm steps (the last result is fetched)."""
    start = time.perf_counter()
    for _ in range(steps):
        logs = step(batches)
    tf.nest.flatten(logs)[0].numpy()
    return (time.perf_counter() - start) / steps


def anchor_model(spec: Spec) -> tf.keras.Model:
    """What a user writes without dprepro: the same layers, Keras' own SGD, non-private."""
    model = tf.keras.Sequential(build_layers(spec))
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=spec.training.learning_rate),
                  loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def array_batches(x, y, batch_size: int) -> tf.data.Dataset:
    """Batches sliced from in-memory arrays, as `model.fit(x, y, shuffle=False)` makes them."""
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder=True)


def poisson_variant(spec: Spec) -> Spec:
    """The spec with Poisson sampling (and so one example per microbatch)."""
    return spec.replace({"data.sampling": "poisson", "privacy.num_microbatches": spec.training.batch_size})


def with_batch_size(spec: Spec, batch_size: int | None) -> Spec:
    """The spec at another batch size (one example per microbatch when private), validated again."""
    if batch_size is None:
        return spec
    return spec.replace({"training.batch_size": batch_size,
                         **({"privacy.num_microbatches": batch_size} if spec.private else {})})


def build_row(spec: Spec, name: str, data):
    engine.seed_everything(0, spec.engine.use_xla)
    batch_size = spec.training.batch_size
    if name == "anchor":
        return anchor_model(spec), array_batches(data.x_train, data.y_train, batch_size)
    if name == "fast-ledger":        # the fast engine with the privacy ledger's recorder, as training runs it:
        model, batches = build_row(spec, "fast", data)     # one epoch's capacity, drained between timings
        attach(model, len(data.x_train) // batch_size)
        return model, batches
    if name == "fast-secret":        # privacy.randomness secret: a secret key, each noise value from SECRET_DRAWS draws
        secret = spec.replace({"privacy.randomness": "secret"})
        return (engine.build_model(secret, "fast", seed=sampling.SecretKey()),
                sampling.shuffled_batches(data.x_train, data.y_train, batch_size, sampling.SecretKey()))
    if name.endswith("-poisson"):
        return (engine.build_model(poisson_variant(spec), name.removesuffix("-poisson")),
                sampling.poisson_batches(data.x_train, data.y_train, batch_size, 0, POISSON_STEPS))
    return engine.build_model(spec, name), sampling.shuffled_batches(data.x_train, data.y_train, batch_size, 0)


def bench(spec: Spec, data_dir, steps: int = 20, repeats: int = 5, tutorial_steps: int = 2,
          epoch: bool = True, engines=DEFAULT_ROWS, breakdown: bool = True, progress=print) -> dict:
    """Time each row; return the benchmark record (also what `dprepro bench` writes)."""
    batch_size = spec.training.batch_size
    n = spec.train_examples if epoch else min(8 * batch_size, spec.train_examples)
    data = load_data(spec, data_dir, train_examples=n, test_examples=1)
    steppers, memory, recorders = {}, {}, {}
    growth = {}
    for name in engines:
        before = peak_rss_mib()
        model, batches = build_row(spec, name, data)
        batches = iter(batches.repeat())
        step = model.make_train_function()
        step(batches)  # trace and build the step
        steppers[name] = (step, batches)
        recorders[name] = getattr(model, "step_recorder", None)
        memory[name] = peak_rss_mib()
        growth[name] = memory[name] - before
        progress(f"bench: {name} warmed up (process peak RSS {memory[name]:.0f} MiB, +{growth[name]:.0f} MiB)")
    per_step = {name: [] for name in engines}
    for r in range(repeats):
        for name in engines:
            k = tutorial_steps if name == "tutorial" else steps
            if recorders[name] is not None:        # as training drains it after each epoch: not timed
                recorders[name].drain()
            per_step[name].append(1000 * time_steps(*steppers[name], k))
        progress(f"bench: repetition {r + 1}/{repeats}: "
                 + ", ".join(f"{n} {per_step[n][-1]:.1f} ms/step" for n in engines))
    medians = {name: statistics.median(v) for name, v in per_step.items()}
    baseline = min((b for b in ("none", "anchor") if b in medians), key=medians.get, default=None)
    rows = {}
    for name in engines:
        rows[name] = {
            "steps_timed": (tutorial_steps if name == "tutorial" else steps) * repeats,
            "ms_per_step_median": medians[name], "ms_per_step_min": min(per_step[name]),
            "ms_per_step_max": max(per_step[name]), "ms_per_step_each_repeat": per_step[name],
            "ratio_to_baseline": medians[name] / medians[baseline] if baseline else None,
            "examples_per_second": 1000 * batch_size / medians[name],
            "process_peak_rss_mib_after_warmup": memory[name],
            # the peak's growth while this row was built and took its first step (exact for the first
            # row; for later rows only what goes beyond the earlier rows' peak)
            "peak_rss_growth_mib": growth[name],
        }
    poisson_to_shuffled = {name: medians[f"{name}-poisson"] / medians[name] for name in ("fast", "vectorized")
                           if name in medians and f"{name}-poisson" in medians}
    record = {
        "bench_schema": BENCH_SCHEMA, "spec": spec.name, "spec_version": spec.version,
        "batch_size": batch_size, "model": dataclasses.asdict(spec.model), "use_xla": spec.engine.use_xla,
        "repeats": repeats, "timing": TIMING, "host": socket.gethostname(), "baseline": baseline,
        "engine_versions": {name: ENGINE_VERSIONS[name.split("-")[0]] for name in engines
                            if name != "anchor"},
        "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                    "note": "0 = TensorFlow's default (one thread pool per core)"},
        "environment": this_machine(), "engines": rows,
        "poisson_to_shuffled": poisson_to_shuffled,   # a Poisson step's time over a shuffled step's, same engine
    }
    if breakdown and "fast" in engines:
        record["fast_breakdown"] = fast_breakdown(spec, data, steps, repeats, progress)
    if epoch:
        record["epoch"] = real_epochs(spec, data, [n for n in engines if n != "tutorial"], baseline, progress)
    return record


def fast_breakdown(spec: Spec, data, steps: int, repeats: int, progress) -> dict:
    """Milliseconds of each phase of the `fast` step, each phase its own compiled function on fixed
    inputs (the previous phase's outputs of one real batch), timed alternately with the whole step;
    their sum next to the whole step shows what the split misses (scheduling, overlap)."""
    model, _ = build_row(spec, "fast", data)
    batch_size = spec.training.batch_size
    x, y = tf.constant(data.x_train[:batch_size]), tf.constant(data.y_train[:batch_size])
    model.train_on_batch(x, y)   # builds the model and its optimizer
    _, kept, grads_z = model.backward(x, y)
    layers = [(layer, tf.constant(a), tf.constant(g)) for (layer, a, _), g in zip(kept, grads_z)]
    m = model.num_microbatches

    def parts():
        return [LayerGradients(layer, a, g, m) for layer, a, g in layers]

    scale = model.example_scale(parts(), batch_size)
    grads = [tf.constant(gr) for p in parts() for gr in p.clipped_sum(scale)]
    variables = [v for layer, _, _ in layers for v in layer.trainable_weights]
    phases = {
        "forward+backward": lambda: model.backward(x, y)[2],
        **{f"norms {layer.name}": (lambda i=i: LayerGradients(*layers[i], m).squared_norms())
           for i, (layer, _, _) in enumerate(layers)},
        **{f"norms and clipped sum {layer.name}":
           (lambda i=i: [LayerGradients(*layers[i], m).squared_norms(),
                         LayerGradients(*layers[i], m).clipped_sum(scale)]) for i, (layer, _, _) in enumerate(layers)},
        "clip factors": lambda: model.example_scale(parts(), batch_size),
        "noise": lambda: model.noisy_mean(grads),
        "optimizer": lambda: optimizer_step(model.optimizer, grads, variables),
    }
    functions = {name: tf.function(f) for name, f in phases.items()}
    full_step, full_batches = model.make_train_function(), iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    full_step(full_batches)
    for f in functions.values():
        f()
    times = {name: [] for name in [*functions, "full step"]}
    for _ in range(repeats):
        for name, f in functions.items():
            times[name].append(1000 * time_steps(lambda _: f(), None, 2 * steps))
        times["full step"].append(1000 * time_steps(full_step, full_batches, 2 * steps))
    med = {name: statistics.median(v) for name, v in times.items()}
    names = [layer.name for layer, _, _ in layers]
    norms = {n: med[f"norms {n}"] for n in names}
    sums = {n: max(med[f"norms and clipped sum {n}"] - med[f"norms {n}"], 0.0) for n in names}
    out = {
        "forward+backward": med["forward+backward"],
        "per-layer norms": sum(norms.values()),
        "clip factors": max(med["clip factors"] - sum(norms.values()), 0.0),
        "clipped sum": sum(sums.values()),
        "noise": med["noise"],
        "optimizer": med["optimizer"],
        "full step": med["full step"],
        "norms by layer": norms,
        "clipped sum by layer": sums,
        "method": " ".join(fast_breakdown.__doc__.split()),
    }
    out["sum of phases"] = sum(out[k] for k in ("forward+backward", "per-layer norms", "clip factors",
                                                  "clipped sum", "noise", "optimizer"))
    progress("bench: fast step breakdown (ms): " + ", ".join(
        f"{k} {v:.2f}" for k, v in out.items() if isinstance(v, float)))
    return out


def optimizer_step(optimizer, grads, variables) -> tf.Tensor:
    """One SGD update by zero (the weights stay as they are); a tensor to wait for."""
    optimizer.apply_gradients(zip([tf.zeros_like(g) for g in grads], variables))
    return tf.zeros([])


class Drain(tf.keras.callbacks.Callback):
    """The ledger's recorder drained after each epoch, as training does (an epoch-level hook only: a
    LambdaCallback would define every batch hook and make Keras fetch each step's logs)."""

    def __init__(self, recorder):
        super().__init__()
        self.recorder = recorder

    def on_epoch_end(self, epoch, logs=None):
        self.recorder.drain()


def real_epochs(spec: Spec, data, engines, baseline, progress) -> dict:
    """One training epoch of each row through `model.fit` (after a first epoch that traces)."""
    out = {}
    batch_size = spec.training.batch_size
    for name in engines:
        model, batches = build_row(spec, name, data)
        timer = EpochTimer()
        steps = len(data.x_train) // batch_size
        if name == "anchor":
            model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=2, callbacks=[timer], verbose=0)
        else:
            recorder = getattr(model, "step_recorder", None)
            drain = [Drain(recorder)] if recorder else []
            model.fit(batches, epochs=2, callbacks=[timer, *drain], verbose=0,
                      steps_per_epoch=steps if name.endswith("-poisson") else None)
        out[name] = {"seconds": timer.seconds[1], "steps": steps,
                     "ms_per_step": 1000 * timer.seconds[1] / steps}
        progress(f"bench: one real epoch of {name}: {timer.seconds[1]:.1f} s ({out[name]['ms_per_step']:.1f} ms/step)")
    base = min((b for b in ("none", "anchor") if b in out), key=lambda b: out[b]["seconds"], default=None)
    for name in out:
        out[name]["ratio_to_baseline"] = out[name]["seconds"] / out[base]["seconds"] if base else None
    return out


def format_table(record: dict) -> str:
    env = record["environment"]
    arithmetic = env.get("arithmetic", {})
    lines = [f"{record['spec']} v{record['spec_version']}, batch {record['batch_size']}, "
             f"{env['cpu']} x{env['cpu_count']}, TF {env['packages']['tensorflow']}, XLA {record['use_xla']}, "
             f"oneDNN {'on' if arithmetic.get('onednn') else 'off'}"
             + (f" (ISA limit {arithmetic['onednn_max_cpu_isa']})" if arithmetic.get("onednn_max_cpu_isa") else ""),
             f"{'engine':<18} {'ms/step':>9} {'min-max':>15} {'ratio':>7} {'examples/s':>11} {'peak RSS':>9}"]
    for name, r in record["engines"].items():
        ratio = f"{r['ratio_to_baseline']:.2f}x" if r["ratio_to_baseline"] else "-"
        lines.append(f"{name:<18} {r['ms_per_step_median']:>9.1f} "
                     f"{r['ms_per_step_min']:>7.1f}-{r['ms_per_step_max']:<7.1f} {ratio:>7} "
                     f"{r['examples_per_second']:>11.0f} {r['process_peak_rss_mib_after_warmup']:>6.0f} MiB")
    lines.append(f"ratio: to the faster non-private row ({record['baseline']})")
    for name, r in record.get("poisson_to_shuffled", {}).items():
        lines.append(f"poisson / shuffled step, {name}: {r:.2f}x")
    for name, e in record.get("epoch", {}).items():
        ratio = f", {e['ratio_to_baseline']:.2f}x" if e.get("ratio_to_baseline") else ""
        lines.append(f"real epoch, {name}: {e['seconds']:.2f} s, {e['ms_per_step']:.1f} ms/step{ratio}")
    if "fast_breakdown" in record:
        b = record["fast_breakdown"]
        lines.append("fast step, ms: " + ", ".join(f"{k} {v:.2f}" for k, v in b.items() if isinstance(v, float)))
        for part in ("norms by layer", "clipped sum by layer"):
            lines.append(f"  {part}, ms: " + ", ".join(f"{k} {v:.2f}" for k, v in b[part].items()))
    return "\n".join(lines)


def bench_paths(argv: list[str], out_dir: Path, label: str, progress=print) -> dict:
    """Run `dprepro bench ARGV` once per arithmetic path (a fresh process each: the kernels are
    chosen when TensorFlow loads) and combine the records: {path: record}."""
    records = {}
    for path, env in SIMULATED_PATHS.items():
        progress(f"bench: arithmetic path {path} {env or '(as the machine is)'}")
        cmd = [sys.executable, "-m", "dprepro.cli", "bench", *argv, "--label", f"{label}-{path}", "--out", str(out_dir)]
        proc = subprocess.run(cmd, env=path_environ(path))
        if proc.returncode != 0:
            raise RuntimeError(f"bench on path {path} failed (exit {proc.returncode})")
        records[path] = json.loads((Path(out_dir) / f"{label}-{path}.json").read_text())
    return {"bench_schema": BENCH_SCHEMA,
            "paths": {p: {"env": SIMULATED_PATHS[p], "record": r} for p, r in records.items()}}


def format_paths_table(combined: dict) -> str:
    """One table: ms/step and ratio of each row on each path; real-epoch ratios below."""
    paths = list(combined["paths"])
    records = {p: combined["paths"][p]["record"] for p in paths}
    names = list(next(iter(records.values()))["engines"])
    lines = ["ms/step (ratio to the faster of none and anchor on the same path)",
             f"{'engine':<18} " + " ".join(f"{p:>22}" for p in paths)]
    for name in names:
        cells = []
        for p in paths:
            r = records[p]["engines"][name]
            ratio = f"{r['ratio_to_baseline']:.2f}x" if r["ratio_to_baseline"] else "-"
            cells.append(f"{r['ms_per_step_median']:>12.1f} ({ratio})")
        lines.append(f"{name:<18} " + " ".join(f"{c:>22}" for c in cells))
    for name in records[paths[0]].get("poisson_to_shuffled", {}):
        cells = [f"{records[p]['poisson_to_shuffled'][name]:.2f}x" for p in paths]
        lines.append(f"{'poisson/' + name:<18} " + " ".join(f"{c:>22}" for c in cells))
    if all("epoch" in r for r in records.values()):
        for name in records[paths[0]]["epoch"]:
            cells = [f"{records[p]['epoch'][name]['seconds']:>12.2f} s"
                     + (f" ({records[p]['epoch'][name]['ratio_to_baseline']:.2f}x)"
                        if records[p]["epoch"][name]["ratio_to_baseline"] else "") for p in paths]
            lines.append(f"{'epoch ' + name:<18} " + " ".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)
