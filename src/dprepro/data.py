"""MNIST from the four canonical IDX files: located, verified by SHA-256, decoded with numpy.

Lookup order for the folder: `--data-dir`, then `$DPREPRO_DATA_DIR`, then `data/mnist`.
A file missing there is downloaded from the spec's `data.url` (when given) and kept only
if its hash is right. Normalisation is the tutorial's: float32 / 255, shape (N, 28, 28, 1),
one-hot float32 labels.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dprepro.errors import InputError
from dprepro.files import atomic

DEFAULT_DIR = "data/mnist"
ENV_VAR = "DPREPRO_DATA_DIR"
# name -> (file, SHA-256 of the .gz file, IDX magic number)
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz",
                     "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 2051),
    "train_labels": ("train-labels-idx1-ubyte.gz",
                     "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 2049),
    "test_images": ("t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 2051),
    "test_labels": ("t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 2049),
}
NUM_CLASSES = 10


@dataclass(frozen=True)
class Mnist:
    """Normalised arrays, ready for Keras, plus the hashes of the files they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    files: dict  # file name -> sha256
    x_val: np.ndarray | None = None   # the validation examples (data.validation_examples), if any
    y_val: np.ndarray | None = None


def data_dir(cli_value: str | None = None) -> Path:
    """The folder to read: the CLI's value, else $DPREPRO_DATA_DIR, else data/mnist."""
    return Path(cli_value or os.environ.get(ENV_VAR) or DEFAULT_DIR)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_files(folder: Path, url: str | None = None) -> dict:
    """Check (downloading first if needed) all four files; return {name: Path}."""
    paths = {}
    for name, (filename, expected, _) in FILES.items():
        path = folder / filename
        if not path.exists():
            if not url:
                raise InputError(
                    f"{path}: MNIST file missing (expected sha256 {expected}); "
                    f"use --data-dir, ${ENV_VAR} or data.url")
            download(f"{url.rstrip('/')}/{filename}", path, expected)
        try:
            actual = sha256_of(path)
        except OSError as e:
            raise InputError(f"{path}: cannot read the MNIST file: {e.strerror or e}") from None
        if actual != expected:
            raise InputError(f"{path}: corrupted MNIST file: sha256 {actual}, expected {expected}")
        paths[name] = path
    return paths


def download(url: str, path: Path, expected: str) -> None:
    """Fetch `url` to `path` through a temporary file; keep it only if its SHA-256 is `expected`."""
    digest = hashlib.sha256()
    print(f"dprepro: downloading {url}", flush=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic(path, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
            if digest.hexdigest() != expected:     # raised inside: the temporary file is discarded
                raise InputError(
                    f"{url}: downloaded file has sha256 {digest.hexdigest()}, expected {expected}; discarded")
    except (urllib.error.URLError, OSError) as e:
        raise InputError(f"{url}: download failed ({getattr(e, 'reason', e)}); nothing kept") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Decode one gzipped IDX file (big-endian header: magic, then one uint32 per dimension)."""
    raw = gzip.decompress(path.read_bytes())
    header = np.frombuffer(raw, dtype=">u4", count=1)[0]
    if header != magic:
        raise InputError(f"{path}: IDX magic number {header}, expected {magic}")
    ndim = magic & 0xFF
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(folder: Path, url: str | None = None, train_examples: int | None = None,
               test_examples: int | None = None, validation_examples: int | None = None) -> Mnist:
    """The first `train_examples` / `test_examples` examples (all by default), normalised; with
    `validation_examples`, the training file's last that many as the validation set."""
    paths = verified_files(folder, url)
    arrays = {name: read_idx(paths[name], FILES[name][2]) for name in FILES}

    def images(a, n):
        return (a[:n].astype(np.float32) / 255.0)[..., np.newaxis]

    def one_hot(a, n):
        return np.eye(NUM_CLASSES, dtype=np.float32)[a[:n]]

    return Mnist(
        x_train=images(arrays["train_images"], train_examples),
        y_train=one_hot(arrays["train_labels"], train_examples),
        x_test=images(arrays["test_images"], test_examples),
        y_test=one_hot(arrays["test_labels"], test_examples),
        files={FILES[name][0]: FILES[name][1] for name in FILES},
        **({} if not validation_examples else validation_split(arrays, train_examples, validation_examples,
                                                                images, one_hot)),
    )


def validation_split(arrays: dict, train_examples: int | None, validation_examples: int, images, one_hot) -> dict:
    """The training file's last `validation_examples` examples: the same set whatever train_examples is,
    and never among the first train_examples (ValueError if they would overlap)."""
    start = len(arrays["train_labels"]) - validation_examples
    if train_examples is not None and train_examples > start:
        raise ValueError(f"{train_examples} training and {validation_examples} validation examples overlap: the "
                         f"training file has {len(arrays['train_labels'])}")
    return {"x_val": images(arrays["train_images"][start:], validation_examples),
            "y_val": one_hot(arrays["train_labels"][start:], validation_examples)}
