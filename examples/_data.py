"""Data for the examples: scikit-learn's handwritten digits (1,797 8x8 images, shipped with the
package, no download) and the tasks derived from them, plus minibatching.

Images come back as float32 arrays in lgc's canonical "SSCB" layout (H, W, 1, N) with pixel
values in [0, 1]; labels as int64 vectors. Every split is seeded, so runs are reproducible.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.datasets import load_digits


def digits(size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as (size, size, 1, N) float32 in [0, 1], and their labels (N,).

    size > 8 upsamples with cubic spline interpolation (scipy.ndimage.zoom), clipped to [0, 1].
    """
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)  # (N, 8, 8)
    if size != 8:
        x = ndimage.zoom(x, (1, size / 8, size / 8), order=3).clip(0, 1)
    return np.ascontiguousarray(x.transpose(1, 2, 0)[:, :, None, :]), d.target.astype(np.int64)


def split(n: int, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, test) index split of n observations (MATLAB splitEachLabel-like)."""
    perm = np.random.default_rng(seed).permutation(n)
    k = int(round(n * test_fraction))
    return np.sort(perm[k:]), np.sort(perm[:k])


def rotate(x: np.ndarray, max_angle: float, copies: int, seed: int = 0):
    """Each image of x (size, size, 1, N) rotated `copies` times by random angles in
    [-max_angle, max_angle] degrees (counterclockwise, scipy.ndimage.rotate, bilinear): the
    stand-in for MATLAB's digitTrain4DArrayData. Returns images (size, size, 1, N·copies) and
    the angles (N·copies,) in degrees, copy-major."""
    rng = np.random.default_rng(seed)
    n = x.shape[-1]
    angles = rng.uniform(-max_angle, max_angle, size=n * copies).astype(np.float32)
    out = np.empty(x.shape[:3] + (n * copies,), np.float32)
    for k in range(n * copies):
        out[:, :, 0, k] = ndimage.rotate(x[:, :, 0, k % n], angles[k], reshape=False, order=1)
    return out.clip(0, 1), angles


def translate(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Random integer X/Y translations in [-max_shift, max_shift] per image, zero filled
    (MATLAB's augmentedImageDatastore RandXTranslation/RandYTranslation)."""
    if max_shift == 0:
        return x
    h, w = x.shape[:2]
    p = max_shift
    padded = np.pad(x, ((p, p), (p, p), (0, 0), (0, 0)))
    out = np.empty_like(x)
    dy = rng.integers(-p, p + 1, size=x.shape[-1])
    dx = rng.integers(-p, p + 1, size=x.shape[-1])
    for i in range(x.shape[-1]):
        out[..., i] = padded[p + dy[i]:p + dy[i] + h, p + dx[i]:p + dx[i] + w, :, i]
    return out


def minibatches(n: int, batch_size: int, rng: np.random.Generator, discard_partial=True):
    """Index arrays of shuffled minibatches over n observations (one epoch); the last partial
    batch is dropped when `discard_partial` (minibatchqueue PartialMiniBatch="discard"), which
    also keeps one compiled signature per run."""
    perm = rng.permutation(n)
    stop = n - n % batch_size if discard_partial else n
    return [perm[i:i + batch_size] for i in range(0, stop, batch_size)]


def onehot(labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """(num_classes, N) float32 one-hot targets, the "CB" layout preprocessMiniBatch makes."""
    t = np.zeros((num_classes, len(labels)), np.float32)
    t[labels, np.arange(len(labels))] = 1
    return t


def digit_rows(seed: int = 0):
    """Digits read row by row as sequences: (8 features, N, 8 time steps) float32 "CBT"
    arrays, labels (N,)."""
    x, y = digits(8)
    return np.ascontiguousarray(x[:, :, 0, :].transpose(1, 2, 0)), y


def digit_tokens(levels: int = 4):
    """Digits as token sequences: each pixel quantized to `levels` gray levels, each row of 8
    pixels read as one word (a number in [0, levels**8)), so a digit is a sentence of 8 tokens.
    Words are re-indexed to a 0-based vocabulary (sorted word values). Returns
    tokens (1, N, 8) int64 ("CBT"), labels (N,), vocabulary size."""
    x, y = digits(8)
    q = np.minimum((x[:, :, 0, :] * levels).astype(np.int64), levels - 1)  # (8 rows, 8 cols, N)
    words = (q * levels ** np.arange(8)[None, :, None]).sum(axis=1)  # (8 rows, N)
    vocab, idx = np.unique(words, return_inverse=True)
    return idx.reshape(words.shape).T[None, :, :].astype(np.int64), y, len(vocab)
