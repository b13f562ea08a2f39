"""What the model sees: the pixels, or ScatterNet features of them, optionally normalised per example.

- `data.features: none` (default): the 28×28×1 images in [0, 1].
- `data.features: scatternet`: the wavelet scattering transform of each image (Oyallon & Mallat
  2015; the features of Tramèr & Boneh 2021), by kymatio 0.3.0's NumPy frontend with J = 2 scales
  and L = 8 orientations up to order 2: 1 + J·L + L²·J(J−1)/2 = 81 channels of 7×7, given to the
  model channels-last (7, 7, 81). The filters are computed by kymatio, not learned and not fitted
  to data: each image's features depend on that image alone, so they cost no privacy.
- `data.normalization: group` (with `data.norm_groups` G): each example's features standardised
  within each of G groups of consecutive channels (mean 0, variance 1 over the group's channels and
  positions; GroupNorm without learned scale, as Tramèr & Boneh use it). Per example, so no privacy
  cost either. `none`: as computed.
- `data.normalization: private`: every channel standardised with statistics of the training set
  released privately (`private_statistics`, Tramèr & Boneh's noisy BatchNorm statistics): per
  example the vector of channel means and the vector of channel second moments (over the 7×7
  positions), each clipped to L2 norm `norm_clip_mean` / `norm_clip_square`, summed over the n
  training examples, plus Gaussian noise of std `norm_noise_multiplier` × that clip, divided by n;
  variance = max(second moment − mean², 0) (channels whose variance comes out 0 are set to 0).
  Adding or removing one example moves each sum by at most its clip: two Gaussian mechanisms, which
  the accountant composes with the training (accounting.releases). The noise is drawn once per seed
  from the stream (seed, "normalization", k): whoever knows the seed can regenerate it, like every
  other draw of a run. The released statistics are kept in the seed's record (they are public by
  construction) and `dprepro evaluate` normalises the test features with them.
- `data.features: dp_pca` (Abadi et al. 2016): the model (`pca_mlp`) sees the pixels through a
  fixed projection onto `pca_dimensions` principal directions released privately
  (`private_projection`): each training image flattened and scaled to unit L2 norm, their
  784×784 covariance AᵀA plus a symmetric Gaussian noise (iid N(0, σ²) entries, σ =
  `pca_noise_multiplier`, then (M + Mᵀ)/2), and the eigenvectors of its largest eigenvalues. Adding
  or removing one example moves AᵀA by xxᵀ, of Frobenius norm 1: one Gaussian mechanism, composed
  with the training (accounting.releases). Drawn once per seed from the stream (seed, "pca", 0); the
  projection is a non-trainable weight of the model, saved with it.

ScatterNet features of all 70,000 MNIST images take about 1.5 minutes on 2 CPU cores; they are
computed once and cached as `<cache>/features/<key>.npy` (cache: $DPREPRO_CACHE_DIR, else
~/.cache/dprepro), the key being the SHA-256 of the four MNIST files' hashes, the split and the
number of its first examples used (a validation set, the training file's last examples, is cut from
the whole file's entry, or has its own under the split `train-last`), the transform's parameters and kymatio's version; a cache file is checked against the SHA-256 recorded beside it
and computed again when it does not match. Nothing random.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from dprepro.data import Mnist, load_mnist
from dprepro.files import atomic, write_json
from dprepro.spec import Spec
from dprepro.spec.schema import DATASETS

SCATTERING = {"J": 2, "L": 8, "max_order": 2, "shape": [28, 28]}
CHANNELS = 81
TRAIN_FILE_EXAMPLES = DATASETS["mnist"]["train"]
CHUNK = 2000


def cache_dir() -> Path:
    return Path(os.environ.get("DPREPRO_CACHE_DIR") or Path.home() / ".cache" / "dprepro") / "features"


def scattering(images: np.ndarray) -> np.ndarray:
    """(n, 28, 28, 1) images -> (n, 7, 7, 81) float32 scattering coefficients, channels last."""
    # The 2-D frontend alone: kymatio.numpy also imports the 3-D transform, whose filter bank needs a
    # scipy function that scipy 1.17 no longer has.
    from kymatio.scattering2d.frontend.numpy_frontend import ScatteringNumPy2D

    transform = ScatteringNumPy2D(J=SCATTERING["J"], shape=tuple(SCATTERING["shape"]), L=SCATTERING["L"],
                                  max_order=SCATTERING["max_order"])
    out = np.empty((len(images), 7, 7, CHANNELS), np.float32)
    for start in range(0, len(images), CHUNK):
        block = transform(np.ascontiguousarray(images[start:start + CHUNK, :, :, 0], dtype=np.float32))
        out[start:start + CHUNK] = np.transpose(block, (0, 2, 3, 1))
    return out


def cache_key(files: dict, split: str, n: int) -> str:
    from importlib.metadata import version

    identity = {"files": files, "split": split, "examples": n, "transform": "scattering2d", **SCATTERING,
                "kymatio": version("kymatio")}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def cached_scattering(images: np.ndarray, files: dict, split: str, progress=print) -> np.ndarray:
    """The scattering of the first len(images) images of a split, from the cache when it holds them
    intact, else computed and cached (none for no images)."""
    if len(images) == 0:
        return np.zeros((0, 7, 7, CHANNELS), np.float32)
    key = cache_key(files, split, len(images))
    path, meta = cache_dir() / f"{key}.npy", cache_dir() / f"{key}.json"
    try:
        recorded = json.loads(meta.read_text())["sha256"]
        if hashlib.sha256(path.read_bytes()).hexdigest() == recorded:
            return np.load(path)
        progress(f"features: {path} does not match its recorded SHA-256; computing it again")
    except (OSError, ValueError, KeyError):
        pass
    progress(f"features: ScatterNet of the {len(images)} {split} images (once; cached in {path.parent})")
    features = scattering(images)
    with atomic(path, "wb") as f:
        np.save(f, features)
    write_json(meta, {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "shape": list(features.shape),
                      "identity": {"files": files, "split": split, "examples": len(images), **SCATTERING}})
    return features


def group_normalized(x: np.ndarray, groups: int) -> np.ndarray:
    """Each example standardised within each of `groups` groups of consecutive channels (eps 1e-5)."""
    n, h, w, c = x.shape
    g = x.reshape(n, h * w, groups, c // groups).astype(np.float64)
    mean = g.mean(axis=(1, 3), keepdims=True)
    var = g.var(axis=(1, 3), keepdims=True)
    return ((g - mean) / np.sqrt(var + 1e-5)).reshape(n, h, w, c).astype(np.float32)


# Examples per slice of the float64 temporaries below. Their operations are elementwise or within one
# example, so slices give the same bits as the whole array (tests/test_features.py checks), while a
# slice of ScatterNet features costs about 130 MB in float64 instead of about 2 GB a temporary.
SLICE = 4096


def per_example_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each example's channel means of x and of x squared, in float64: two (n, C) arrays."""
    means, squares = [], []
    for start in range(0, len(x), SLICE):
        flat = x[start:start + SLICE].reshape(-1, int(np.prod(x.shape[1:-1])), x.shape[-1]).astype(np.float64)
        means.append(flat.mean(axis=1))
        squares.append((flat ** 2).mean(axis=1))
    return np.concatenate(means), np.concatenate(squares)


def private_statistics(x: np.ndarray, spec: Spec, seed: int, made: list | None = None) -> dict:
    """The privately released channel means and variances of the training features `x` (n, 7, 7, C);
    each release, with the clip and noise it used, appended to `made` (the privacy ledger's releases)."""
    from dprepro.accounting import normalization_release
    from dprepro.sampling import stream_seed
    import tensorflow as tf

    d, n = spec.data, spec.train_examples
    means, squares = per_example_moments(x)
    noisy, clipped_fraction = [], []
    for k, (what, per_example, clip) in enumerate((("means", means, d.norm_clip_mean),
                                                   ("second moments", squares, d.norm_clip_square))):
        norms = np.linalg.norm(per_example, axis=1, keepdims=True)
        clipped = per_example * np.minimum(1.0, clip / np.maximum(norms, 1e-300))
        noise = tf.random.stateless_normal([x.shape[-1]], stream_seed(seed, "normalization", k),
                                           dtype=tf.float64, alg="philox").numpy()
        sigma = d.norm_noise_multiplier
        noisy.append((clipped.sum(axis=0) + sigma * clip * noise) / n)
        if made is not None:
            made.append(normalization_release(what, clip, sigma))
        clipped_fraction.append(float(np.mean(norms > clip)))
    mean, second = noisy
    return {"mean": mean.tolist(), "var": np.maximum(second - mean ** 2, 0.0).tolist(),
            "clipped_fraction": clipped_fraction}


def standardized(x: np.ndarray, statistics: dict) -> np.ndarray:
    """`x` standardised per channel by released statistics (channels of variance 0 set to 0)."""
    mean, var = np.array(statistics["mean"]), np.array(statistics["var"])
    scale, kept = np.sqrt(var + 1e-5), var > 0
    out = np.empty(x.shape, np.float32)
    for start in range(0, len(x), SLICE):      # elementwise: slices give the whole array's bits
        out[start:start + SLICE] = ((x[start:start + SLICE] - mean) / scale * kept).astype(np.float32)
    return out


def with_private_normalization(spec: Spec, data: Mnist, seed: int, made: list | None = None) -> tuple[Mnist, dict | None]:
    """(data standardised by this seed's private release, the release) for `private` normalisation;
    (data, None) otherwise. The releases made are appended to `made`."""
    if spec.data.normalization != "private":
        return data, None
    statistics = private_statistics(data.x_train, spec, seed, made)     # of the examples trained on only
    held_out = {} if data.x_val is None else {"x_val": standardized(data.x_val, statistics)}
    return replace(data, x_train=standardized(data.x_train, statistics),
                   x_test=standardized(data.x_test, statistics), **held_out), statistics


def private_projection(x: np.ndarray, spec: Spec, seed: int, made: list | None = None) -> np.ndarray:
    """The DP-PCA projection (784, pca_dimensions), float32, of the training images `x` (n, 28, 28, 1);
    the release, with the noise it used, appended to `made` (the privacy ledger's releases)."""
    import tensorflow as tf

    from dprepro.accounting import pca_release
    from dprepro.sampling import stream_seed

    flat = x.reshape(len(x), -1).astype(np.float64)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    unit = flat / np.where(norms > 0, norms, 1.0)
    covariance = unit.T @ unit
    d = covariance.shape[0]
    noise = tf.random.stateless_normal([d, d], stream_seed(seed, "pca", 0), dtype=tf.float64, alg="philox").numpy()
    sigma = spec.data.pca_noise_multiplier
    noisy = covariance + sigma * noise
    if made is not None:
        made.append(pca_release(sigma))
    values, vectors = np.linalg.eigh((noisy + noisy.T) / 2)
    top = vectors[:, np.argsort(values)[::-1][:spec.data.pca_dimensions]]
    top *= np.where(top[np.argmax(np.abs(top), axis=0), np.arange(top.shape[1])] < 0, -1.0, 1.0)   # a fixed sign
    return top.astype(np.float32)


def load_data(spec: Spec, data_dir: Path, train_examples: int | None = None, test_examples: int | None = None) -> Mnist:
    """MNIST as `spec` reads it (its first train_examples / test_examples, by default the spec's own,
    and its validation examples), turned into what its model sees: its features, then its normalisation."""
    n_train = spec.data.train_examples if train_examples is None else train_examples
    n_test = spec.data.test_examples if test_examples is None else test_examples
    data = load_mnist(Path(data_dir), spec.data.url, n_train, n_test, spec.data.validation_examples)
    if spec.data.features != "scatternet":      # pixels (dp_pca projects them inside the model, per seed)
        return data

    def progress(line):
        print(line, file=sys.stderr, flush=True)

    out = {"x_test": cached_scattering(data.x_test, data.files, "test", progress)}
    n = len(data.x_train)
    if data.x_val is not None and n + len(data.x_val) == TRAIN_FILE_EXAMPLES:   # the whole file: its cache entry
        whole = cached_scattering(np.concatenate([data.x_train, data.x_val]), data.files, "train", progress)
        out.update(x_train=whole[:n], x_val=whole[n:])
    else:
        out["x_train"] = cached_scattering(data.x_train, data.files, "train", progress)
        if data.x_val is not None:      # the training file's last examples: a cache entry of their own
            out["x_val"] = cached_scattering(data.x_val, data.files, "train-last", progress)
    if spec.data.normalization == "group":
        out = {k: group_normalized(x, spec.data.norm_groups) for k, x in out.items()}
    return replace(data, **out)
