"""Data sets, the IDX reader, splits, binarisation and support checks."""

import gzip
import hashlib

import numpy as np
import pytest
import torch

from pyro_vae.data import DATA_DIR_ENV, load_data, read_idx, synthetic_basis
from pyro_vae.errors import ConfigError, DataError, UnknownNameError
from pyro_vae.likelihoods import make_likelihood

from conftest import SHARED_DATA


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_mnist(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (50, 28, 28)))
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 50))
    return tmp_path


def test_idx_reader_round_trips(fake_mnist):
    images = read_idx(fake_mnist / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (50, 28, 28) and images.dtype == np.uint8


def test_mnist_with_only_the_test_files_is_split_80_10_10(fake_mnist, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(fake_mnist))
    data = load_data("mnist")
    assert (len(data.train), len(data.val), len(data.test)) == (40, 5, 5)
    assert data.event_shape == (1, 28, 28) and 0 <= data.train.min() and data.train.max() <= 1


def test_mnist_with_training_files_keeps_the_official_test_set(fake_mnist):
    rng = np.random.default_rng(1)
    raw = fake_mnist / "MNIST" / "raw"
    _write_idx(raw / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (100, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 100))
    data = load_data("mnist", fake_mnist)
    assert (len(data.train), len(data.val), len(data.test)) == (90, 10, 50)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda b: b[:-7], "truncated or corrupt"),
        (lambda b: b"\x01\x02" + b[2:], "bad magic number"),
        (lambda b: b[:6], "truncated inside its header"),
    ],
)
def test_corrupt_idx_files_are_reported(fake_mnist, corrupt, message):
    path = fake_mnist / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    with gzip.open(path) as handle:
        raw = handle.read()
    with gzip.open(path, "wb") as handle:
        handle.write(corrupt(raw))
    with pytest.raises(DataError, match=message):
        load_data("mnist", fake_mnist)


def test_missing_mnist_files_and_directory_are_reported(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="no MNIST files"):
        load_data("mnist", tmp_path)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError, match="--data-dir"):
        load_data("mnist")


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the offline MNIST copy lies beside the project only on our machines")
def test_the_offline_mnist_test_files_read_as_10000_digits():
    path = SHARED_DATA / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    assert hashlib.md5(path.read_bytes()).hexdigest() == "9fb629c4189551a2d022fa330f9573f3"
    data = load_data("mnist", SHARED_DATA)
    assert len(data.train) + len(data.val) + len(data.test) == 10_000
    counts = torch.bincount(torch.cat([data.train_labels, data.val_labels, data.test_labels]), minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # the published t10k counts


def test_splits_are_deterministic_and_disjoint():
    a, b = load_data("digits"), load_data("digits")
    assert torch.equal(a.train, b.train) and torch.equal(a.test_labels, b.test_labels)
    assert (len(a.train), len(a.val), len(a.test)) == (1438, 180, 179)
    other = load_data("digits", split_seed=1)
    assert not torch.equal(a.train, other.train)


def test_digit_filter_and_binarisation():
    threes = load_data("digits", digit=3, binarize="static")
    assert set(threes.train_labels.tolist()) == {3}
    assert set(threes.train.unique().tolist()) <= {0.0, 1.0}
    dynamic = load_data("digits", binarize="dynamic")
    assert len(dynamic.train.unique()) > 2 and set(dynamic.test.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ConfigError, match="no labels"):
        load_data("synthetic-patches", digit=3)
    with pytest.raises(ConfigError, match="binarize"):
        load_data("digits", binarize="maybe")


def test_synthetic_and_natural_patches():
    patches = load_data("synthetic-patches")
    assert patches.event_shape == (1, 5, 5)
    basis = synthetic_basis().flatten(1)
    assert torch.linalg.matrix_rank(basis) == 5
    # The data's covariance is W W^T (unit-variance coefficients) + 0.01 I: its top five eigenvalues carry it.
    x = patches.train.flatten(1)
    eigenvalues = torch.linalg.eigvalsh(torch.cov(x.T)).flip(0)
    expected = torch.linalg.eigvalsh(basis.T @ basis).flip(0)[:5] + 0.01
    assert torch.allclose(eigenvalues[:5], expected, rtol=0.1)
    assert eigenvalues[5:].max() < 0.02
    natural = load_data("natural-patches")
    assert natural.event_shape == (1, 12, 12) and 0 <= natural.train.min() and natural.train.max() <= 1


def test_unknown_data_set_lists_the_valid_names():
    with pytest.raises(UnknownNameError, match="expected one of: digits, mnist, natural-patches, synthetic-patches"):
        load_data("cifar")


@pytest.mark.parametrize(
    "name, sigma_x, data, ok",
    [
        ("bernoulli", 1.0, torch.tensor([0.0, 1.0]), True),
        ("bernoulli", 1.0, torch.tensor([0.0, 0.5]), False),
        ("cbernoulli", 1.0, torch.tensor([0.0, 0.5, 1.0]), True),
        ("cbernoulli", 1.0, torch.tensor([-0.1, 0.5]), False),
        ("gaussian", 0.1, torch.tensor([-3.0, 7.0]), True),
        ("gaussian", 0.1, torch.tensor([float("inf")]), False),
        ("laplace", "shared", torch.tensor([-3.0]), True),
    ],
)
def test_likelihood_support_checks(name, sigma_x, data, ok):
    likelihood = make_likelihood(name, (len(data),), sigma_x=sigma_x)
    if ok:
        likelihood.check_data(data[None])
    else:
        with pytest.raises(DataError, match="needs data in"):
            likelihood.check_data(data[None])


@pytest.mark.parametrize("sigma_x", [0.0, -1.0, "learned", float("nan")])
def test_bad_sigma_x_is_refused(sigma_x):
    with pytest.raises(ConfigError, match="sigma_x"):
        make_likelihood("gaussian", (3,), sigma_x=sigma_x)
