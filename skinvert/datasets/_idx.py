"""A small reader for IDX files (the MNIST / Fashion-MNIST format), NumPy only.

Layout (big-endian): two zero bytes, a type code, the number of dimensions
``d``, then ``d`` unsigned 32-bit sizes and the data in C order. Files ending
in ``.gz`` are decompressed on the fly.
"""

import glob
import gzip
import os

import numpy as np

__all__ = ["load_idx", "load_idx_images", "DEBIAN_FASHION_MNIST_DIR"]

#: Where Debian's ``dataset-fashion-mnist`` package puts its IDX files.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def load_idx(path):
    """Read one IDX file (optionally gzip-compressed).

    Parameters
    ----------
    path : str or path-like
        The IDX file (``.gz`` is decompressed on the fly).

    Returns
    -------
    array : ndarray
        Of the file's shape and dtype (uint8 for image and label files), in
        native byte order.

    Raises
    ------
    ValueError
        If the header is not an IDX header or the data size does not match it.
    """
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise ValueError(f"{path!r} is not an IDX file (bad magic number {raw[:4]!r}).")
    dtype, ndim = _TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path!r} is truncated: its header needs {header} bytes.")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    n = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != n * dtype.itemsize:
        raise ValueError(
            f"{path!r}: header announces shape {shape} ({n * dtype.itemsize} bytes of "
            f"data) but the file holds {len(raw) - header} bytes after the header."
        )
    data = np.frombuffer(raw, dtype=dtype, count=n, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find(directory, kind, what):
    # Names seen in the wild: train-images-idx3-ubyte(.gz), train-images.idx3-ubyte,
    # t10k-labels-idx1-ubyte.gz, ...
    prefix = "train" if kind == "train" else "t10k"
    pats = [f"{prefix}-{what}*idx*", f"{prefix}-{what}*.idx*"]
    hits = sorted({p for pat in pats for p in glob.glob(os.path.join(directory, pat))})
    if not hits:
        raise FileNotFoundError(
            f"No IDX file '{prefix}-{what}-idx?-ubyte[.gz]' in {directory!r}. For "
            "Fashion-MNIST install Debian's dataset-fashion-mnist package "
            f"(files in {DEBIAN_FASHION_MNIST_DIR}); for MNIST pass the directory "
            "holding its IDX files."
        )
    return hits[0]


def load_idx_images(directory=DEBIAN_FASHION_MNIST_DIR, kind="train", return_labels=False):
    """Load the images (and labels) of an MNIST-style IDX directory.

    Parameters
    ----------
    directory : str or path-like, default=DEBIAN_FASHION_MNIST_DIR
        A directory holding ``{train,t10k}-{images,labels}-idx?-ubyte[.gz]``.
    kind : {"train", "test"}, default="train"
        Which split to read.
    return_labels : bool, default=False
        Also return the labels.

    Returns
    -------
    images : ndarray of shape (n_samples, height, width), uint8
        The images.
    labels : ndarray of shape (n_samples,), uint8
        The labels; only with ``return_labels=True``.
    """
    if kind not in ("train", "test"):
        raise ValueError(f"kind must be 'train' or 'test', got {kind!r}.")
    directory = os.fspath(directory)
    images = load_idx(_find(directory, kind, "images"))
    if images.ndim != 3:
        raise ValueError(f"Expected 3-D image array in {directory!r}, got shape {images.shape}.")
    if not return_labels:
        return images
    labels = load_idx(_find(directory, kind, "labels"))
    if labels.shape != images.shape[:1]:
        raise ValueError(
            f"{labels.shape[0]} labels for {images.shape[0]} images in {directory!r}."
        )
    return images, labels
