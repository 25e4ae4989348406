"""Image-quality, consistency and diversity metrics for reconstructions in [-1, 1].

Per-image scores (PSNR, SSIM) come from scikit-image and are returned as ``(N,)`` float64 tensors
on the CPU. The Fréchet distance (Heusel et al. 2017, the FID formula) is computed on the
penultimate features of the shipped digit classifier (:mod:`smcdiff.classifier`) instead of
Inception features: 8x8 digits are far from Inception's domain, and nothing is downloaded.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch
from scipy import linalg
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from .classifier import DigitClassifier, load_digit_classifier

__all__ = [
    "psnr",
    "ssim",
    "masked_psnr",
    "consistency",
    "diversity",
    "frechet_distance",
    "digit_fid",
    "classifier_features",
    "ufid",
    "jfid",
]

ArrayLike = torch.Tensor | np.ndarray


def _as_numpy(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a tensor or array of numbers") from err


def _check_images(x: np.ndarray, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W); got {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one image; got {x.shape}")


def _check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_b} must have the shape of {name_a} {a.shape}; got {b.shape}")


def _psnr_rows(x: np.ndarray, ref: np.ndarray, data_range: float) -> torch.Tensor:
    """PSNR of each row of ``x`` (N, ...) against ``ref`` (N, ...); inf for identical rows."""
    out = np.empty(x.shape[0])
    with np.errstate(divide="ignore"):
        for i in range(x.shape[0]):
            out[i] = peak_signal_noise_ratio(ref[i], x[i], data_range=data_range)
    return torch.from_numpy(out)


def psnr(x: ArrayLike, ref: ArrayLike, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of each image, ``10 log10(data_range^2 / MSE)`` in dB.

    Computed by ``skimage.metrics.peak_signal_noise_ratio`` on each image.

    Parameters
    ----------
    x : tensor or array, shape (N, C, H, W)
        Reconstructions.
    ref : tensor or array, shape (N, C, H, W)
        Reference images.
    data_range : float
        Width of the value range; 2.0 for images in [-1, 1].

    Returns
    -------
    torch.Tensor, shape (N,), float64
        PSNR per image; ``inf`` where an image equals its reference.

    Raises
    ------
    ValueError
        If ``x`` is not 4-D, if ``ref`` does not have the shape of ``x`` or if ``data_range`` is
        not positive.
    """
    xa, ra = _as_numpy(x, "x"), _as_numpy(ref, "ref")
    _check_images(xa, "x")
    _check_same_shape(xa, ra, "x", "ref")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive; got {data_range}")
    return _psnr_rows(xa, ra, float(data_range))


def ssim(x: ArrayLike, ref: ArrayLike, data_range: float = 2.0, win_size: int = 3) -> torch.Tensor:
    """Structural similarity of each image to its reference (Wang et al. 2004).

    Computed by ``skimage.metrics.structural_similarity`` with a uniform ``win_size x win_size``
    window, channels along axis 0 (the mean SSIM over channels). The default ``win_size = 3``
    suits 8x8 images: scikit-image averages the SSIM map over the positions where the whole window
    fits, which is 6x6 = 36 windows for ``win_size = 3`` but only 2x2 for the customary 7.

    Parameters
    ----------
    x : tensor or array, shape (N, C, H, W)
        Reconstructions.
    ref : tensor or array, shape (N, C, H, W)
        Reference images.
    data_range : float
        Width of the value range; 2.0 for images in [-1, 1].
    win_size : int
        Odd side of the window, at most ``min(H, W)``.

    Returns
    -------
    torch.Tensor, shape (N,), float64
        SSIM per image, in [-1, 1]; 1 where an image equals its reference.

    Raises
    ------
    ValueError
        If ``x`` is not 4-D, if ``ref`` does not have the shape of ``x``, or if ``win_size`` is
        even, below 3 or larger than the image.
    """
    xa, ra = _as_numpy(x, "x"), _as_numpy(ref, "ref")
    _check_images(xa, "x")
    _check_same_shape(xa, ra, "x", "ref")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive; got {data_range}")
    if win_size < 3 or win_size % 2 == 0 or win_size > min(xa.shape[-2:]):
        raise ValueError(f"win_size must be odd, >= 3 and <= min(H, W) = {min(xa.shape[-2:])}; got {win_size}")
    out = np.array(
        [
            structural_similarity(ra[i], xa[i], data_range=float(data_range), win_size=win_size, channel_axis=0)
            for i in range(xa.shape[0])
        ]
    )
    return torch.from_numpy(out)


def masked_psnr(x_hat: ArrayLike, y: ArrayLike, mask: ArrayLike, data_range: float = 2.0) -> torch.Tensor:
    """PSNR over the observed pixels only: the consistency of an inpainting with its observation.

    For row i, ``10 log10(data_range^2 / MSE_i)`` with ``MSE_i`` the mean of
    ``(x_hat - y)^2`` over the pixels where ``mask`` is True (scikit-image's PSNR on those pixels).

    Parameters
    ----------
    x_hat : tensor or array, shape (N, C, H, W)
        Reconstructions.
    y : tensor or array, shape (N, C, H, W)
        Observations; values where ``mask`` is False are ignored.
    mask : bool tensor or array, broadcastable to (N, C, H, W)
        True = observed. Each row must observe at least one value.
    data_range : float
        Width of the value range; 2.0 for images in [-1, 1].

    Returns
    -------
    torch.Tensor, shape (N,), float64
        ``inf`` where a reconstruction matches the observation exactly.

    Raises
    ------
    ValueError
        If the shapes do not match, if ``mask`` does not broadcast, or a row observes nothing.
    """
    xa, ya = _as_numpy(x_hat, "x_hat"), _as_numpy(y, "y")
    _check_images(xa, "x_hat")
    _check_same_shape(xa, ya, "x_hat", "y")
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.dtype != np.bool_:
        raise ValueError(f"mask must be boolean; got dtype {m.dtype}")
    try:
        m = np.broadcast_to(m, xa.shape)
    except ValueError as err:
        raise ValueError(f"mask of shape {m.shape} does not broadcast to {xa.shape}") from err
    counts = m.reshape(m.shape[0], -1).sum(axis=1)
    if (counts == 0).any():
        raise ValueError(f"mask observes no pixel in rows {np.flatnonzero(counts == 0).tolist()}")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive; got {data_range}")
    out = np.empty(xa.shape[0])
    with np.errstate(divide="ignore"):
        for i in range(xa.shape[0]):
            out[i] = peak_signal_noise_ratio(ya[i][m[i]], xa[i][m[i]], data_range=float(data_range))
    return torch.from_numpy(out)


def consistency(
    x_hat: torch.Tensor,
    y: ArrayLike,
    operator: Callable[[torch.Tensor], torch.Tensor],
    data_range: float = 2.0,
) -> torch.Tensor:
    """PSNR between ``operator(x_hat)`` and the observation ``y``: how well a reconstruction
    explains what was measured.

    For inpainting, where the operator keeps the observed pixels, use :func:`masked_psnr`, which
    averages the error over the observed pixels only (a masking operator that zeroes the others
    would dilute the error by the unobserved fraction).

    Parameters
    ----------
    x_hat : torch.Tensor, shape (N, C, H, W)
        Reconstructions.
    y : tensor or array, shape (N, ...)
        Observations, of the shape of ``operator(x_hat)``.
    operator : callable
        Forward operator, ``(N, C, H, W) -> (N, ...)``.
    data_range : float
        Width of the value range of the observations.

    Returns
    -------
    torch.Tensor, shape (N,), float64
        PSNR per row; ``inf`` where ``operator(x_hat)`` equals ``y``.

    Raises
    ------
    ValueError
        If ``x_hat`` is not 4-D or ``y`` does not have the shape of ``operator(x_hat)``.
    """
    if not callable(operator):
        raise ValueError(f"operator must be callable; got {type(operator).__name__}")
    _check_images(_as_numpy(x_hat, "x_hat"), "x_hat")
    with torch.no_grad():
        ax = _as_numpy(operator(x_hat), "operator(x_hat)")
    ya = _as_numpy(y, "y")
    _check_same_shape(ax, ya, "operator(x_hat)", "y")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive; got {data_range}")
    return _psnr_rows(ax, ya, float(data_range))


def diversity(samples: ArrayLike) -> float:
    """Mean per-pixel standard deviation across the K reconstructions of each observation.

    Parameters
    ----------
    samples : tensor or array, shape (N, K, C, H, W)
        K reconstructions for each of N observations, K >= 2.

    Returns
    -------
    float
        ``mean_{n, c, h, w} std_k samples[n, k, c, h, w]``, with the unbiased (K - 1) standard
        deviation; 0 when all reconstructions agree.

    Raises
    ------
    ValueError
        If ``samples`` is not 5-D or K < 2.
    """
    s = _as_numpy(samples, "samples")
    if s.ndim != 5:
        raise ValueError(f"samples must have shape (N, K, C, H, W); got {s.shape}")
    if s.shape[1] < 2:
        raise ValueError(f"samples must hold K >= 2 reconstructions per observation; got K = {s.shape[1]}")
    return float(s.std(axis=1, ddof=1).mean())


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula).

    ``d^2 = ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})``, with the means and unbiased
    covariances of the features. The matrix square root is ``scipy.linalg.sqrtm``, a negligible imaginary
    part from round-off dropped, as in the reference FID code; if it fails or is not finite (a near-singular
    product: fewer samples than features, repeated rows) the trace is taken as the sum of the square roots of
    the eigenvalues of the symmetric ``R (S_b + eps I) R``, ``R = (S_a + eps I)^{1/2}``.

    Parameters
    ----------
    feats_a : tensor or array, shape (n_a, F)
    feats_b : tensor or array, shape (n_b, F)
        Feature sets, n_a, n_b >= 2.
    eps : float
        Diagonal offset used only when the plain square root fails.

    Returns
    -------
    float
        The squared Fréchet distance (>= 0 up to round-off).

    Raises
    ------
    ValueError
        If the inputs are not 2-D, have different F or fewer than two rows, or if the square root
        has a significant imaginary part.
    """
    a, b = _as_numpy(feats_a, "feats_a"), _as_numpy(feats_b, "feats_b")
    for arr, name in ((a, "feats_a"), (b, "feats_b")):
        if arr.ndim != 2 or arr.shape[0] < 2:
            raise ValueError(f"{name} must have shape (n, F) with n >= 2; got {arr.shape}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_b must have the feature dimension of feats_a ({a.shape[1]}); got {b.shape[1]}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            covmean = linalg.sqrtm(cov_a @ cov_b)
        except linalg.LinAlgError:
            covmean = np.full_like(cov_a, np.nan)
    if np.isfinite(covmean).all() and np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0.0, atol=1e-3):
            raise ValueError(f"matrix square root has a large imaginary part {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    if np.isfinite(covmean).all():
        trace = np.trace(covmean)
    else:  # a near-singular product: tr (S_a S_b)^{1/2} = sum sqrt(eig(S_a^{1/2} S_b S_a^{1/2})), symmetric PSD
        offset = eps * np.eye(cov_a.shape[0])
        w, v = np.linalg.eigh(cov_a + offset)
        root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        trace = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ (cov_b + offset) @ root_a), 0, None)).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace)


def _image_size(classifier) -> int:
    """The side of the square images ``classifier`` takes: its ``config.image_size``, else 8 (the digits)."""
    return getattr(getattr(classifier, "config", None), "image_size", 8)


@torch.no_grad()
def classifier_features(
    images: torch.Tensor, classifier: DigitClassifier | None = None, batch_size: int = 1024
) -> torch.Tensor:
    """Penultimate features of the digit classifier.

    Parameters
    ----------
    images : torch.Tensor, shape (N, 1, S, S)
        Images in [-1, 1]; S = 8, or the classifier's ``config.image_size`` (28 for MNIST).
    classifier : DigitClassifier, optional
        Defaults to :func:`smcdiff.classifier.load_digit_classifier` on ``images``' device.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    torch.Tensor, shape (N, F), float64, on the CPU
    """
    images = torch.as_tensor(images)
    size = _image_size(classifier)
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, size, size):
        raise ValueError(f"images must have shape (N, 1, {size}, {size}); got {tuple(images.shape)}")
    if classifier is None:
        classifier = load_digit_classifier(device=images.device)
    param = next(classifier.parameters())
    was_training = classifier.training
    classifier.eval()
    chunks = [
        classifier.features(chunk.to(device=param.device, dtype=param.dtype)).to("cpu", torch.float64)
        for chunk in images.split(batch_size)
    ]
    classifier.train(was_training)
    return torch.cat(chunks)


def digit_fid(
    images_a: torch.Tensor, images_b: torch.Tensor, classifier: DigitClassifier | None = None
) -> float:
    """Fréchet distance between two sets of digit images in the digit classifier's feature space.

    Parameters
    ----------
    images_a : torch.Tensor, shape (n_a, 1, 8, 8)
    images_b : torch.Tensor, shape (n_b, 1, 8, 8)
        Images in [-1, 1], n_a, n_b >= 2.
    classifier : DigitClassifier, optional
        Feature extractor; the shipped classifier by default.

    Returns
    -------
    float
        :func:`frechet_distance` of the features ``classifier.features(images)``.
    """
    images_a, images_b = torch.as_tensor(images_a), torch.as_tensor(images_b)
    size = _image_size(classifier)
    for arr, name in ((images_a, "images_a"), (images_b, "images_b")):
        if arr.ndim != 4 or tuple(arr.shape[1:]) != (1, size, size):
            raise ValueError(f"{name} must have shape (N, 1, {size}, {size}); got {tuple(arr.shape)}")
    if classifier is None:
        classifier = load_digit_classifier(device=images_a.device)
    return frechet_distance(classifier_features(images_a, classifier), classifier_features(images_b, classifier))


def _check_digit_batch(x: torch.Tensor, name: str, n: int | None = None) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, 8, 8):
        raise ValueError(f"{name} must have shape (N, 1, 8, 8); got {tuple(x.shape)}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{name} must hold one image per row of x ({n}); got {x.shape[0]}")
    return x


def ufid(x_hat: torch.Tensor, x: torch.Tensor, classifier: DigitClassifier | None = None) -> float:
    """UFID ("Non-Uniform Diffusion Models" §4.2): Fréchet distance between p(x_hat) and p(x).

    The unconditional distributions of reconstructions and of the true images are compared in the
    digit classifier's features; this is :func:`digit_fid` under the paper's name.

    Parameters
    ----------
    x_hat : torch.Tensor, shape (n_a, 1, 8, 8)
        Reconstructions in [-1, 1].
    x : torch.Tensor, shape (n_b, 1, 8, 8)
        True images in [-1, 1].
    classifier : DigitClassifier, optional
        Feature extractor; the shipped classifier by default.

    Returns
    -------
    float
    """
    _check_digit_batch(x_hat, "x_hat")
    return digit_fid(x_hat, x, classifier)


def jfid(
    x_hat: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    classifier: DigitClassifier | None = None,
    batch_size: int = 1024,
) -> float:
    """JFID ("Non-Uniform Diffusion Models" §4.2): Fréchet distance between p(x_hat, y) and p(x, y).

    Each pair is embedded as the concatenation ``[f(x_hat_i), f(y_i)]`` (resp. ``[f(x_i), f(y_i)]``) of
    the classifier features f of the reconstruction and of its observation, and
    :func:`frechet_distance` compares the two sets of 2F-dimensional vectors. Unlike the UFID it
    sees whether a reconstruction goes with its own observation: shuffling the reconstructions
    between observations leaves the UFID unchanged but not the JFID.

    Parameters
    ----------
    x_hat : torch.Tensor, shape (N, 1, 8, 8)
        Reconstructions, row i from observation ``y[i]``.
    x : torch.Tensor, shape (N, 1, 8, 8)
        True images, row i observed as ``y[i]``.
    y : torch.Tensor, shape (N, 1, 8, 8)
        Observations as images (e.g. the masked image, or the low-resolution image up-sampled to
        8x8).
    classifier : DigitClassifier, optional
        Feature extractor; the shipped classifier by default.
    batch_size : int
        Images per forward pass of the classifier.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If an input is not ``(N, 1, 8, 8)`` or the three do not have the same N >= 2.
    """
    x = _check_digit_batch(x, "x")
    x_hat = _check_digit_batch(x_hat, "x_hat", x.shape[0])
    y = _check_digit_batch(y, "y", x.shape[0])
    if classifier is None:
        classifier = load_digit_classifier(device=x.device)
    f_y = classifier_features(y, classifier, batch_size)
    joint_hat = torch.cat([classifier_features(x_hat, classifier, batch_size), f_y], 1)
    joint = torch.cat([classifier_features(x, classifier, batch_size), f_y], 1)
    return frechet_distance(joint_hat, joint)
