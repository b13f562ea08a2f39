"""The one I/O layer: strict reading of input files, atomic writing of output files, and the
folders every command writes into.

Reading: a spec, sweep or result file must be a regular UTF-8 file of at most MAX_INPUT_BYTES
(a fifo is never opened, so nothing blocks); YAML is read by a safe loader that refuses a key given
twice. Any problem is an InputError of one line naming the file.

Writing: `atomic(path)` hands out a temporary file in the target's folder; when the block ends
without an error the file is flushed and fsynced, renamed over the target, and the folder is fsynced
too, so that after a crash the target is either the old file or the whole new one (never empty).
On an error the temporary file is removed and the target is untouched. Every writer of the project
(results, seeds, checkpoints, models, figures, reports, sweep files) goes through it.

Folders: OUT/<name>/v<version>/ for a spec's outputs (`run_folder`) and
LOGDIR/<name>/v<version>/seed-<k>[-<engine>]/ for one seed's logs, model and checkpoint (`seed_folder`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import yaml

from dprepro.errors import InputError

MAX_INPUT_BYTES = 1 << 20


# ---- reading ---------------------------------------------------------------------------------------

class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:          # an unhashable key: PyYAML's own error follows
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep)


def read_text_file(path, what: str) -> str:
    """The text of a regular, UTF-8 file of at most MAX_INPUT_BYTES, or InputError (never blocks on a fifo)."""
    p = Path(path)
    try:
        if not p.exists():
            raise InputError(f"{path}: cannot read {what}: no such file")
        if not p.is_file():
            raise InputError(f"{path}: cannot read {what}: not a regular file")
        if p.stat().st_size > MAX_INPUT_BYTES:
            raise InputError(f"{path}: cannot read {what}: larger than {MAX_INPUT_BYTES} bytes")
        return p.read_bytes().decode("utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot read {what}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: cannot read {what}: not UTF-8 text (byte {e.start})") from None


def read_yaml(path, what: str):
    """The YAML document of a spec or sweep file, read strictly (InputError in one line otherwise)."""
    text = read_text_file(path, what)
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(e, "problem", None)
        why = f": {problem}" if problem and problem.startswith("duplicate key") else ""
        raise InputError(f"{path}: not valid YAML{where}{why}") from None
    except RecursionError:
        raise InputError(f"{path}: not valid YAML: nested too deeply") from None


def read_json(path, what: str):
    """The JSON document of a file dprepro wrote (a result, seed record, selection, frontier, audit),
    read strictly (InputError in one line naming the file otherwise)."""
    text = read_text_file(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: cannot read {what}: not valid JSON (line {e.lineno}, column {e.colno}: "
                         f"{e.msg})") from None
    except RecursionError:
        raise InputError(f"{path}: cannot read {what}: nested too deeply") from None


@contextmanager
def reading(path, what: str):
    """Around code that takes fields from a document read from `path`: a field missing or of the wrong
    kind is an InputError naming the file and the field, not a KeyError traceback."""
    try:
        yield
    except KeyError as e:
        raise InputError(f"{path}: {e.args[0]}: missing from {what}") from None
    except (TypeError, IndexError, AttributeError, ValueError) as e:
        raise InputError(f"{path}: {what} has a field of the wrong kind ({e})") from None


# ---- writing ---------------------------------------------------------------------------------------

def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class WriteFailed(OSError):
    """An output could not be written (the CLI says "cannot write", and that finished seeds are kept)."""


def write_failed(e: OSError, path) -> WriteFailed:
    return WriteFailed(e.errno, e.strerror or str(e), str(e.filename or path))


@contextmanager
def atomic(path, mode: str = "w"):
    """Yield a file object to write `path`'s new content into (text as UTF-8, whatever the locale);
    on success it replaces `path` (file and folder fsynced), on an error nothing changes, and an
    OSError is a WriteFailed naming the file. Files are made readable (0644)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_failed(e, path) from None
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)     # mkstemp creates 0600; outputs are meant to be read
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise write_failed(e, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def finite_json(obj):
    """JSON has no infinity: an infinite value (epsilon without noise) is written as "inf"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_json(path, obj) -> None:
    """`obj` as indented JSON (infinities as "inf"), atomically."""
    with atomic(path) as f:
        json.dump(finite_json(obj), f, indent=2, allow_nan=False)
        f.write("\n")


def write_text(path, text: str) -> None:
    with atomic(path) as f:
        f.write(text)


def write_bytes(path, content: bytes) -> None:
    with atomic(path, "wb") as f:
        f.write(content)


def save_figure(fig, path) -> Path:
    """A matplotlib figure as PNG, atomically, without a version stamp (stable bytes); closes it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic(path, "wb") as f:
            fig.savefig(f, format="png", dpi=110, metadata={"Software": None})
    finally:
        plt.close(fig)
    return path


# ---- folders ---------------------------------------------------------------------------------------

def run_folder(root, name: str, version: int) -> Path:
    """ROOT/<name>/v<version>: where one spec version's result (OUT) or logs (LOGDIR) go."""
    return Path(root) / name / f"v{version}"


def seed_folder(logdir, name: str, version: int, seed: int, engine_override: str | None = None) -> Path:
    """LOGDIR/<name>/v<version>/seed-<k>, with -<engine> when the run overrode the spec's engine."""
    return run_folder(logdir, name, version) / (f"seed-{seed}" + (f"-{engine_override}" if engine_override else ""))


def result_path(out_dir, name: str, version: int, engine_override: str | None = None) -> Path:
    """OUT/<name>/v<version>/result.json; result-<engine>.json when the run overrode the engine."""
    return run_folder(out_dir, name, version) / (f"result-{engine_override}.json" if engine_override else "result.json")


def sweep_folder(root, name: str, version: int) -> Path:
    """ROOT/sweeps/<name>/v<version>: a sweep's cell specs, cell results and frontier (OUT) or logs (LOGDIR)."""
    return run_folder(Path(root) / "sweeps", name, version)
