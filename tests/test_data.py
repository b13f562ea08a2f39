"""MNIST: vendored files verified, decoded as the tutorial does, bad copies refused, downloads checked."""

import functools
import hashlib
import http.server
import shutil
import threading

import numpy as np
import pytest

from conftest import DATA, EXPERIMENTS, run_cli_in_process
from dprepro import data
from dprepro.errors import InputError


def test_vendored_files_match_sha256sums_and_the_loader():
    listed = dict(reversed(line.split()) for line in (DATA / "SHA256SUMS").read_text().splitlines())
    assert listed == {f: h for f, h, _ in data.FILES.values()}
    for filename, expected in listed.items():
        assert hashlib.sha256((DATA / filename).read_bytes()).hexdigest() == expected


def test_full_data_shapes_and_normalisation():
    m = data.load_mnist(DATA)
    assert m.x_train.shape == (60000, 28, 28, 1) and m.x_train.dtype == np.float32
    assert m.x_test.shape == (10000, 28, 28, 1)
    assert m.y_train.shape == (60000, 10) and m.y_train.dtype == np.float32
    assert np.all(m.y_train.sum(axis=1) == 1)
    assert m.x_train.min() == 0.0 and m.x_train.max() == 1.0
    assert m.x_train.mean() == pytest.approx(0.130660, abs=1e-6)  # PROVENANCE.md: mean/255
    assert list(np.bincount(m.y_train.argmax(1))) == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert list(m.y_train[:10].argmax(1)) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert list(m.y_test[:10].argmax(1)) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_subset_is_the_first_examples():
    m = data.load_mnist(DATA, train_examples=100, test_examples=10)
    assert m.x_train.shape == (100, 28, 28, 1) and m.y_test.shape == (10, 10)


@pytest.fixture
def copy_of_data(tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(DATA, folder, copy_function=shutil.copyfile)  # writable copies
    return folder


def test_missing_file_names_it_and_its_hash(copy_of_data):
    (copy_of_data / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(InputError) as e:
        data.load_mnist(copy_of_data)
    assert str(e.value).startswith(f"{copy_of_data}/t10k-labels-idx1-ubyte.gz: MNIST file missing "
                                   f"(expected sha256 {data.FILES['test_labels'][1]})")


def test_corrupted_file_via_cli_is_exit_2_one_line(copy_of_data, tmp_path):
    target = copy_of_data / "train-labels-idx1-ubyte.gz"
    content = bytearray(target.read_bytes())
    content[1000] ^= 0xFF  # one flipped byte
    target.write_bytes(bytes(content))
    out = tmp_path / "out"
    proc = run_cli_in_process("run", EXPERIMENTS / "smoke.yaml", "--data-dir", copy_of_data, "--out", out, "--logdir", out)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{target}: corrupted MNIST file: sha256 ")
    assert line.endswith(f"expected {data.FILES['train_labels'][1]}")
    assert not out.exists()


def test_data_dir_order(monkeypatch, tmp_path):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    assert str(data.data_dir()) == "data/mnist"
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    assert data.data_dir() == tmp_path
    assert str(data.data_dir("elsewhere")) == "elsewhere"


def test_env_var_is_used_by_the_cli(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli_in_process("run", EXPERIMENTS / "smoke.yaml", "--out", tmp_path / "o", "--logdir", tmp_path / "o",
                   env={data.ENV_VAR: str(empty)})
    assert proc.returncode == 2 and proc.stderr.strip().startswith(f"{empty}/train-images-idx3-ubyte.gz: MNIST file missing")


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a folder: one good copy, one with a corrupted file."""
    served = tmp_path / "served"
    shutil.copytree(DATA, served / "good", copy_function=shutil.copyfile)
    shutil.copytree(DATA, served / "bad", copy_function=shutil.copyfile)
    bad = served / "bad" / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(b"not the MNIST labels")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_fallback_fetches_and_verifies(http_server, tmp_path):
    target = tmp_path / "downloaded"
    m = data.load_mnist(target, url=f"{http_server}/good", train_examples=10, test_examples=10)
    assert m.x_train.shape == (10, 28, 28, 1)
    assert sorted(p.name for p in target.iterdir()) == sorted(f for f, _, _ in data.FILES.values())


def test_corrupted_download_is_rejected_and_not_kept(http_server, tmp_path):
    target = tmp_path / "downloaded"
    with pytest.raises(InputError) as e:
        data.load_mnist(target, url=f"{http_server}/bad")
    assert str(e.value) == (f"{http_server}/bad/t10k-labels-idx1-ubyte.gz: downloaded file has sha256 "
                            f"{hashlib.sha256(b'not the MNIST labels').hexdigest()}, expected "
                            f"{data.FILES['test_labels'][1]}; discarded")
    assert not (target / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list(target.glob("*.part"))


def test_unreachable_download_is_an_input_error(tmp_path, http_server):
    with pytest.raises(InputError, match="download failed"):
        data.load_mnist(tmp_path / "d", url=f"{http_server}/nowhere")
    assert not list((tmp_path / "d").glob("*"))
