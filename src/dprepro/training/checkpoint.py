"""Checkpoints of one seed's training, after every epoch, for an exact resume after a kill.

One file, `checkpoint.npz` in the seed's log folder, written atomically (temporary file, fsync,
rename): the model's weights, the optimizer's variables (for SGD its step counter, which also
addresses the `fast` engine's noise), the history and epoch times so far, the epoch, and what the
checkpoint belongs to (spec content hash, engine, engine version, seed). Batches and noise come
from step-addressed streams (sampling.py), so no generator state needs saving: training resumed
after epoch e reads epoch e+1's batches and draws its noise exactly as an uninterrupted run does.
The file is removed when the seed finishes (its seed.json then holds everything). Under
`privacy.randomness: secret` it also holds the run's key (sampling.SecretKey), the one place it is
ever written: while it exists it is as sensitive as the training data.

Only engines whose randomness is step-addressed resume (RESUMABLE); `vectorized` and `tutorial`
draw their noise inside tf-privacy from TensorFlow's stateful generator, whose position cannot be
restored: their seeds start again.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from dprepro.errors import InputError
from dprepro.files import atomic

FILE = "checkpoint.npz"
RESUMABLE = ("fast", "none")
CHECKPOINT_SCHEMA = 2   # 2: the progress holds the privacy ledger


def identity(spec_sha256: str, engine: str, engine_version: int, seed: int) -> dict:
    """What a checkpoint must match to be used."""
    return {"checkpoint_schema": CHECKPOINT_SCHEMA, "spec_sha256": spec_sha256, "engine": engine,
            "engine_version": engine_version, "seed": seed}


def save(folder: Path, ident: dict, epoch: int, weights: list, optimizer_weights: list, progress: dict,
         secret: np.ndarray | None = None, averages: list | None = None) -> Path:
    """Write the checkpoint after `epoch` epochs (atomically; the previous one stays until then).
    `secret`: the words of a secret-randomness run's key; whoever holds them can regenerate its
    sampling and noise, so such a checkpoint is as sensitive as the training data. `averages`: the
    parameter average's arrays (training.ema_decay), resumed with the weights."""
    path = Path(folder) / FILE
    averages = averages or []
    state = {**ident, "epoch": epoch, "progress": progress, "weights": len(weights),
             "optimizer_weights": len(optimizer_weights), "secret": secret is not None, "averages": len(averages)}
    arrays = {f"w{i}": w for i, w in enumerate(weights)}
    arrays.update({f"a{i}": a for i, a in enumerate(averages)})
    if secret is not None:
        arrays["secret"] = np.asarray(secret, dtype=np.int64)
    arrays.update({f"o{i}": w for i, w in enumerate(optimizer_weights)})
    with atomic(path, "wb") as f:
        np.savez(f, state=np.frombuffer(json.dumps(state).encode(), dtype=np.uint8), **arrays)
    return path


def load(folder: Path, ident: dict) -> dict | None:
    """The checkpoint in `folder` as {"epoch", "progress", "weights", "optimizer_weights", "secret",
    "averages"}, None if
    there is none. One from other spec content, engine, engine version or seed, or an unreadable
    one, is refused (InputError) and never used; `dprepro run --restart` discards it."""
    path = Path(folder) / FILE
    if not path.exists():
        return None
    try:
        with np.load(path) as f:
            state = json.loads(f["state"].tobytes().decode())
            weights = [f[f"w{i}"] for i in range(state["weights"])]
            optimizer_weights = [f[f"o{i}"] for i in range(state["optimizer_weights"])]
            secret = f["secret"] if state.get("secret") else None
            averages = [f[f"a{i}"] for i in range(state.get("averages", 0))] or None
            missing = [k for k in ("epoch", "progress") if k not in state]
    except KeyError as e:
        raise InputError(f"{path}: unreadable checkpoint: {e.args[0]} missing; "
                         f"run again with --restart to discard it") from None
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise InputError(f"{path}: unreadable checkpoint ({type(e).__name__}); "
                         f"run again with --restart to discard it") from None
    if missing:
        raise InputError(f"{path}: unreadable checkpoint: {missing[0]} missing; run again with --restart to discard it")
    theirs = {k: state.get(k) for k in ident}
    if theirs != ident:
        differ = ", ".join(f"{k} {theirs[k]!r} (now {ident[k]!r})" for k in ident if theirs[k] != ident[k])
        raise InputError(f"{path}: checkpoint of another run: {differ}; run again with --restart to discard it")
    return {"epoch": state["epoch"], "progress": state["progress"], "weights": weights,
            "optimizer_weights": optimizer_weights, "secret": secret, "averages": averages}


def discard(folder: Path) -> None:
    (Path(folder) / FILE).unlink(missing_ok=True)
