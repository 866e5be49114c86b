"""Data sets, read from disk or made on the spot, with deterministic train/validation/test splits.

======================= ===================================================================== ===========
name                    what                                                                  shape
======================= ===================================================================== ===========
``digits`` (default)    scikit-learn's bundled 8x8 handwritten digits (1,797), grey / 16      (1, 8, 8)
``mnist``               MNIST read from IDX files in ``data_dir`` (or ``$PYRO_VAE_DATA_DIR``) (1, 28, 28)
``synthetic-patches``   5x5 patches, 5 fixed basis images with Laplace coefficients + noise   (1, 5, 5)
``natural-patches``     12x12 grey patches of scikit-learn's two sample photographs           (1, 12, 12)
======================= ===================================================================== ===========

Splits.  A set with no official split is permuted with a ``torch.Generator`` seeded by
``split_seed`` (default 0, independent of the training seed) and cut 80 / 10 / 10 into train,
validation and test.  MNIST with its 60,000 training images present keeps the official 10,000 test
images as test and cuts the training images 90 / 10; with only the test files (the offline copy on
these machines) those 10,000 are cut 80 / 10 / 10 like any other set.

Binarisation (for the Bernoulli likelihood): ``static`` thresholds at 0.5; ``dynamic`` leaves the
training split grey (fit resamples ``x ~ Bernoulli(x)`` every minibatch, Salakhutdinov & Murray
2008) and binarises validation and test once, stochastically, with the split seed.
"""

import gzip
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import checks
from .errors import ConfigError, DataError
from .registry import Registry

DATASETS = Registry("data set")
DATA_DIR_ENV = "PYRO_VAE_DATA_DIR"
BINARIZE_MODES = ("none", "static", "dynamic")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass
class DataSplits:
    """Train, validation and test tensors ``(n, *event_shape)`` (float32, on the CPU) and labels."""

    name: str
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor = None
    val_labels: torch.Tensor = None
    test_labels: torch.Tensor = None
    binarize: str = "none"
    info: dict = field(default_factory=dict)

    @property
    def event_shape(self):
        return tuple(self.train.shape[1:])

    def summary(self):
        return (
            f"{self.name}: {len(self.train)} train / {len(self.val)} validation / {len(self.test)} test, "
            f"shape {self.event_shape}, binarize={self.binarize}"
        )


def _split(x, labels, split_seed, fractions=SPLIT_FRACTIONS):
    generator = torch.Generator().manual_seed(split_seed)
    order = torch.randperm(len(x), generator=generator)
    n_train = int(round(fractions[0] * len(x)))
    n_val = int(round(fractions[1] * len(x)))
    parts = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    return [x[i] for i in parts], [labels[i] if labels is not None else None for i in parts]


# ---------------------------------------------------------------- IDX files (MNIST)

_IDX_DTYPES = {0x08: np.uint8}


#: The largest IDX file read (full MNIST's training images take 47 MB).
MAX_IDX_BYTES = 2**30


def read_idx(path):
    """Read an IDX file (optionally gzipped) into a NumPy array.

    Format (LeCun et al.): two zero bytes, a type byte (0x08 = uint8), the number of dimensions,
    then one big-endian uint32 per dimension and the raw data.  Written by hand because
    torchvision's reader sits behind a data-set class that refuses folders without the training
    files.
    """
    path = checks.named_file(path, "IDX file", MAX_IDX_BYTES, error=DataError)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = handle.read(MAX_IDX_BYTES + 1)  # a gzip file's contents are bounded too, not only its size
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read IDX file {path}: {error}") from None
    if len(raw) > MAX_IDX_BYTES:
        raise DataError(f"{path} holds more than the {MAX_IDX_BYTES:,} bytes pyro-vae reads from an IDX file")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)
    if len(raw) != expected:
        raise DataError(f"{path} has {len(raw)} bytes; its header {shape} needs {expected}: the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(directory, stem):
    for folder in (directory, directory / "raw", directory / "MNIST" / "raw"):
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def resolve_data_dir(data_dir):
    """The data directory: the argument, else ``$PYRO_VAE_DATA_DIR``, else an error saying how to set it."""
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV)
    if not data_dir:
        raise DataError(f"mnist needs a data directory: pass --data-dir DIR or set {DATA_DIR_ENV}")
    return Path(data_dir).expanduser()


def _download_mnist(directory):
    import torchvision  # only here: downloading is the one place torchvision is needed for data

    torchvision.datasets.MNIST(root=str(directory), train=True, download=True)
    torchvision.datasets.MNIST(root=str(directory), train=False, download=True)


@DATASETS.register("mnist")
def load_mnist(data_dir=None, download=False):
    """MNIST images scaled to [0, 1] and labels, as ``{"train": (x, y) or None, "test": (x, y)}``."""
    directory = resolve_data_dir(data_dir)
    if download:
        _download_mnist(directory)
    parts = {}
    for part, (images, labels) in _MNIST_FILES.items():
        image_path, label_path = _find(directory, images), _find(directory, labels)
        if image_path is None or label_path is None:
            parts[part] = None
            continue
        x = read_idx(image_path)
        y = read_idx(label_path)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{image_path} and {label_path} do not hold matching images and labels: shapes {x.shape}, {y.shape}")
        parts[part] = (torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))
    if parts["test"] is None:
        raise DataError(
            f"no MNIST files in {directory} (looked for {_MNIST_FILES['test'][0]}[.gz] in it, raw/ and MNIST/raw/); "
            f"pass download=True (--download) to fetch them with a network"
        )
    return parts


@DATASETS.register("digits")
def load_digits_images():
    """scikit-learn's 8x8 digits, grey levels 0..16 scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    return x, torch.tensor(bunch.target, dtype=torch.int64)


def synthetic_basis(side=5, n_basis=5):
    """Five fixed 5x5 basis images: a horizontal bar, a vertical bar, two diagonals and a centre blob,
    each scaled to unit norm.  The generating matrix ``W`` of ``synthetic-patches``."""
    grid = torch.arange(side, dtype=torch.float32) - (side - 1) / 2
    row, col = torch.meshgrid(grid, grid, indexing="ij")
    basis = torch.stack(
        [
            torch.exp(-(row**2) / 0.5),
            torch.exp(-(col**2) / 0.5),
            torch.exp(-((row - col) ** 2) / 1.0),
            torch.exp(-((row + col) ** 2) / 1.0),
            torch.exp(-(row**2 + col**2) / 2.0),
        ][:n_basis]
    )
    return basis / basis.flatten(1).norm(dim=1)[:, None, None]


@DATASETS.register("synthetic-patches")
def load_synthetic_patches(n=10000, noise=0.1, seed=0):
    r"""``x = sum_k c_k B_k + noise * eps`` with ``c_k ~ Laplace(0, 1/sqrt 2)`` (unit variance, sparse)
    and ``eps ~ N(0, I)``: the "5 basis functions plus noise" patches of Pyle's Sparse VAE."""
    generator = torch.Generator().manual_seed(seed)
    basis = synthetic_basis()
    uniform = torch.rand(n, len(basis), generator=generator) - 0.5
    coefficients = -torch.sign(uniform) * torch.log1p(-2 * uniform.abs()) / math.sqrt(2)
    x = torch.einsum("nk,khw->nhw", coefficients, basis) + noise * torch.randn(n, 5, 5, generator=generator)
    return x.unsqueeze(1), None


@DATASETS.register("natural-patches")
def load_natural_patches(n=20000, side=12, seed=0):
    """Grey patches (mean of RGB, scaled to [0, 1]) at positions drawn uniformly from scikit-learn's
    two sample photographs (Pyle used CIFAR patches, which cannot be had offline)."""
    from sklearn.datasets import load_sample_images

    images = [torch.tensor(im, dtype=torch.float32).mean(-1) / 255.0 for im in load_sample_images().images]
    generator = torch.Generator().manual_seed(seed)
    which = torch.randint(len(images), (n,), generator=generator)
    patches = []
    for i, image in enumerate(images):
        count = int((which == i).sum())
        rows = torch.randint(image.shape[0] - side + 1, (count,), generator=generator)
        cols = torch.randint(image.shape[1] - side + 1, (count,), generator=generator)
        offsets = torch.arange(side)
        patches.append(image[(rows[:, None, None] + offsets[:, None]), (cols[:, None, None] + offsets[None, :])])
    return torch.cat(patches).unsqueeze(1), None


def load_data(name="digits", data_dir=None, *, digit=None, binarize="none", split_seed=0, download=False):
    """Load a registered data set and split it deterministically (see the module doc).

    :param digit: keep only images of these classes (an int or a sequence; digit data sets only),
        e.g. the single-digit study of the VAE implementation thesis (ch. 5), Fig. 5.17.
    :param binarize: ``none``, ``static`` or ``dynamic``.
    :returns: :class:`DataSplits` of CPU tensors, whatever torch's default device (``fit`` and
        ``evaluate`` move data to their ``device``).
    """
    with torch.device("cpu"):
        return _load_splits(name, data_dir, digit, binarize, split_seed, download)


def _load_splits(name, data_dir, digit, binarize, split_seed, download):
    loader = DATASETS.get(name)
    if binarize not in BINARIZE_MODES:
        raise ConfigError(f"unknown binarize mode {binarize!r}; expected one of: {', '.join(BINARIZE_MODES)}")
    if name == "mnist":
        parts = loader(data_dir=data_dir, download=download)
        if parts["train"] is not None:
            (x_tv, y_tv), (x_test, y_test) = parts["train"], parts["test"]
            (train, val, _), (y_train, y_val, _) = _split(x_tv, y_tv, split_seed, (0.9, 0.1, 0.0))
            xs, ys = [train, val, x_test], [y_train, y_val, y_test]
        else:
            xs, ys = _split(*parts["test"], split_seed)
    else:
        x, y = loader()
        xs, ys = _split(x, y, split_seed)
    if digit is not None:
        xs, ys = _keep_classes(name, xs, ys, digit)
    if binarize == "static":
        xs = [(x > 0.5).float() for x in xs]
    elif binarize == "dynamic":
        generator = torch.Generator().manual_seed(split_seed)
        xs = [xs[0]] + [torch.bernoulli(x.clamp(0, 1), generator=generator) for x in xs[1:]]
    for part, x in zip(("train", "validation", "test"), xs):
        if len(x) == 0:
            raise DataError(f"the {part} split of {name} is empty")
    return DataSplits(name, *xs, *ys, binarize=binarize)


def _keep_classes(name, xs, ys, digit):
    if ys[0] is None:
        raise ConfigError(f"--digit needs a labelled data set (digits, mnist); {name} has no labels")
    wanted = torch.tensor([digit] if isinstance(digit, int) else list(digit))
    if ((wanted < 0) | (wanted > 9)).any():
        raise ConfigError(f"--digit must be in 0..9, got {digit!r}")
    keep = [torch.isin(y, wanted) for y in ys]
    return [x[k] for x, k in zip(xs, keep)], [y[k] for y, k in zip(ys, keep)]
