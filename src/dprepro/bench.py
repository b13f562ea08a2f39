"""Side-by-side speed of the engines on one spec's model and batch size, in one process.

Warm steps are timed by calling the model's compiled train function (the function `model.fit`
calls once per step) on an iterator over real MNIST batches from the same tf.data pipeline that
`dprepro run` uses; engines alternate within each repetition so that machine load affects all
alike; `tutorial` gets fewer steps (it takes ~10 s per step on 2 cores). Optionally one real
epoch of each other engine through `model.fit`, evaluation excluded.
"""

from __future__ import annotations

import resource
import socket
import statistics
import time

from dprepro import engine, results
from dprepro.data import load_mnist

BENCH_SCHEMA = 2
TIMING = "model.make_train_function() on a tf.data iterator of real MNIST batches"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(step, batches, steps: int) -> float:
    """Seconds per step over `steps` consecutive warm steps (the last result is fetched)."""
    start = time.perf_counter()
    for _ in range(steps):
        logs = step(batches)
    float(logs["loss"])
    return (time.perf_counter() - start) / steps


def bench(spec: dict, data_dir, steps: int = 20, repeats: int = 5, tutorial_steps: int = 2,
          epoch: bool = True, engines=("none", "fast", "vectorized", "tutorial"), progress=print) -> dict:
    """Time each engine; return the benchmark record (also what `dprepro bench` writes)."""
    batch_size = spec["training"]["batch_size"]
    n = spec["data"]["train_examples"] if epoch else min(8 * batch_size, spec["data"]["train_examples"])
    data = load_mnist(data_dir, train_examples=n, test_examples=1)
    steppers, memory = {}, {}
    for name in engines:
        engine.seed_everything(0, spec["engine"]["use_xla"])
        model = engine.build_model(spec, name)
        batches = iter(engine.batches(data.x_train, data.y_train, batch_size, 0).repeat())
        step = model.make_train_function()
        step(batches)  # trace and build the step
        steppers[name] = (step, batches)
        memory[name] = peak_rss_mib()
        progress(f"bench: {name} warmed up (process peak RSS {memory[name]:.0f} MiB)")
    per_step = {name: [] for name in engines}
    for r in range(repeats):
        for name in engines:
            k = tutorial_steps if name == "tutorial" else steps
            per_step[name].append(1000 * time_steps(*steppers[name], k))
        progress(f"bench: repetition {r + 1}/{repeats}: "
                 + ", ".join(f"{n} {per_step[n][-1]:.1f} ms/step" for n in engines))
    base = statistics.median(per_step["none"]) if "none" in per_step else None
    rows = {}
    for name in engines:
        median = statistics.median(per_step[name])
        rows[name] = {
            "steps_timed": (tutorial_steps if name == "tutorial" else steps) * repeats,
            "ms_per_step_median": median, "ms_per_step_min": min(per_step[name]),
            "ms_per_step_max": max(per_step[name]), "ms_per_step_each_repeat": per_step[name],
            "ratio_to_none": median / base if base else None,
            "examples_per_second": 1000 * batch_size / median,
            "process_peak_rss_mib_after_warmup": memory[name],
        }
    record = {
        "bench_schema": BENCH_SCHEMA, "spec": spec["name"], "spec_version": spec["version"],
        "batch_size": batch_size, "model": spec["model"], "use_xla": spec["engine"]["use_xla"],
        "repeats": repeats, "timing": TIMING, "host": socket.gethostname(),
        "environment": results.environment(engine.devices(), engine.onednn_enabled()), "engines": rows,
    }
    if epoch:
        record["epoch"] = real_epochs(spec, data, [n for n in engines if n != "tutorial"], progress)
    return record


def real_epochs(spec: dict, data, engines, progress) -> dict:
    """One training epoch of each engine through `model.fit` on the full tf.data pipeline."""
    out = {}
    for name in engines:
        engine.seed_everything(0, spec["engine"]["use_xla"])
        model = engine.build_model(spec, name)
        timer = engine.EpochTimer()
        steps = len(data.x_train) // spec["training"]["batch_size"]
        model.fit(engine.batches(data.x_train, data.y_train, spec["training"]["batch_size"], 0),
                  epochs=2, callbacks=[timer], verbose=0)  # the first epoch includes tracing
        out[name] = {"seconds": timer.seconds[1], "steps": steps,
                     "ms_per_step": 1000 * timer.seconds[1] / steps}
        progress(f"bench: one real epoch of {name}: {timer.seconds[1]:.1f} s ({out[name]['ms_per_step']:.1f} ms/step)")
    if "none" in out:
        for name in out:
            out[name]["ratio_to_none"] = out[name]["seconds"] / out["none"]["seconds"]
    return out


def format_table(record: dict) -> str:
    lines = [f"{record['spec']} v{record['spec_version']}, batch {record['batch_size']}, "
             f"{record['environment']['cpu']} x{record['environment']['cpu_count']}, "
             f"TF {record['environment']['packages']['tensorflow']}, XLA {record['use_xla']}",
             f"{'engine':<10} {'ms/step':>9} {'min-max':>15} {'ratio':>7} {'examples/s':>11} {'peak RSS':>9}"]
    for name, r in record["engines"].items():
        ratio = f"{r['ratio_to_none']:.2f}x" if r["ratio_to_none"] else "-"
        lines.append(f"{name:<10} {r['ms_per_step_median']:>9.1f} "
                     f"{r['ms_per_step_min']:>7.1f}-{r['ms_per_step_max']:<7.1f} {ratio:>7} "
                     f"{r['examples_per_second']:>11.0f} {r['process_peak_rss_mib_after_warmup']:>6.0f} MiB")
    for name, e in record.get("epoch", {}).items():
        ratio = f", {e['ratio_to_none']:.2f}x none" if "ratio_to_none" in e else ""
        lines.append(f"real epoch, {name}: {e['seconds']:.1f} s, {e['ms_per_step']:.1f} ms/step{ratio}")
    return "\n".join(lines)
