"""Image I/O: image files to tensors in the model range, checked against what the model expects.

Kept apart from the mathematics: samplers only ever see tensors. Nothing here changes a user's
picture without being asked: :func:`read_image` refuses an image whose size or colour mode differs
from the model's unless ``resize=True``, and then reports every conversion it made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ImageMismatchError",
    "describe_shape",
    "image_files",
    "load_image",
    "load_mask",
    "read_image",
    "read_mask",
    "to_tensor_image",
    "writable_image_suffixes",
]


class ImageMismatchError(ValueError):
    """An image does not have the size or colour mode the model expects (and was not to be converted)."""


def to_tensor_image(image, channels: int | None = None) -> Tensor:
    """A PIL image to ``(1, C, H, W)`` float32 in [-1, 1]; ``channels`` 1 (grey) or 3 (RGB) converts."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL image, got {type(image).__name__}")
    if channels is not None:
        image = image.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(image, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(arr).permute(2, 0, 1)[None] * 2 - 1


def load_image(path: str | Path, channels: int | None = None, size: tuple[int, int] | None = None) -> Tensor:
    """Read an image file as ``(1, C, H, W)`` in [-1, 1], converting and resizing as asked (no checks).

    ``size = (H, W)`` resizes with area averaging. Prefer :func:`read_image`, which refuses to change
    the picture unless told to.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    with Image.open(path) as img:
        img.load()
        if size is not None:
            img = img.convert("L" if channels == 1 else "RGB") if channels else img
            img = img.resize((size[1], size[0]), Image.Resampling.BOX)
        return to_tensor_image(img, channels)


def load_mask(path: str | Path, size: tuple[int, int] | None = None) -> Tensor:
    """Read a mask PNG as bool ``(1, 1, H, W)``: white (>= 50% grey) = observed pixel, black = to fill."""
    img = load_image(path, channels=1, size=size)
    return img > 0


# ---- checked reading ----
def describe_shape(channels: int, height: int, width: int) -> str:
    """``'8x8 greyscale'``, ``'32x32 RGB'`` or ``'8x8 4-channel'``."""
    mode = {1: "greyscale", 3: "RGB"}.get(channels, f"{channels}-channel")
    return f"{width}x{height} {mode}"


def _pixels(path: Path, what: str, resize: bool) -> tuple[np.ndarray, list[str]]:
    """The image as float ``(h, w, c)`` in [0, 1] with c in {1, 3}, and notes on lossy conversions."""
    from PIL import Image

    notes: list[str] = []
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif mode == "PA":
                img = img.convert("RGBA")
            elif mode == "1":
                img = img.convert("L")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGB")
            if img.mode.startswith("I;16"):
                arr = np.asarray(img, dtype=np.float64) / 65535.0
            elif img.mode in ("L", "LA", "RGB", "RGBA"):
                arr = np.asarray(img, dtype=np.float64) / 255.0
            else:
                raise ImageMismatchError(
                    f"{what} {path.name} has pixel mode {mode!r}; save it as an 8-bit greyscale or RGB image"
                )
    except OSError as err:  # PIL.UnidentifiedImageError included
        raise ValueError(f"cannot read {what} {path}: {err}") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] in (2, 4):  # an alpha channel
        alpha, arr = arr[..., -1], arr[..., :-1]
        if (alpha < 1).any():
            if not resize:
                raise ImageMismatchError(f"{what} {path.name} has transparent pixels; the model has no alpha channel")
            notes.append("dropped the alpha channel")
    return arr.astype(np.float32), notes


def read_image(
    path: str | Path, shape: tuple[int, int, int], *, resize: bool = False, what: str = "image"
) -> tuple[Tensor, list[str]]:
    """Read an image file for a model whose inputs have ``shape = (C, H, W)``.

    Returns ``(1, C, H, W)`` float32 in [-1, 1] and the list of conversions made (empty unless
    ``resize``). An RGB file whose three channels are equal counts as greyscale (nothing is lost).

    Raises
    ------
    ImageMismatchError
        If the image's size or colour mode differs from ``shape`` and ``resize`` is False (the message
        says what the image is and what the model expects), or if the image cannot be represented.
    ValueError
        If the file cannot be read as an image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such {what} file: {path}")
    channels, height, width = shape
    arr, notes = _pixels(path, what, resize)
    h, w, c = arr.shape
    if c == 3 and channels == 1 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
        arr, c = arr[..., :1], 1  # a grey picture stored as RGB
    if (c, h, w) != (channels, height, width) and not resize:
        raise ImageMismatchError(
            f"{what} {path.name} is {describe_shape(c, h, w)} but the model expects {describe_shape(channels, height, width)}"
        )
    if c != channels:
        if channels == 1 and c == 3:
            arr = (arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]  # ITU-R 601 luma, as PIL's "L"
            notes.append("converted RGB to greyscale")
        elif channels == 3 and c == 1:
            arr = np.repeat(arr, 3, axis=-1)
            notes.append("converted greyscale to RGB")
        else:
            raise ImageMismatchError(f"{what} {path.name} has {c} channels; the model expects {channels}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None] * 2 - 1
    if (h, w) != (height, width):
        x = _resize(x, (height, width))
        squashed = " (aspect ratio changed)" if h * width != w * height else ""
        notes.append(f"resized {w}x{h} to {width}x{height}{squashed}")
    return x, notes


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Area averaging to ``size`` (nearest neighbour when enlarging)."""
    return torch.nn.functional.interpolate(x, size=size, mode="area")


def read_mask(path: str | Path, size: tuple[int, int], *, resize_to: tuple[int, int] | None = None) -> Tensor:
    """Read a mask image of ``size = (h, w)`` (the input image's) as bool ``(1, 1, H, W)``.

    White (>= 50% grey) = observed pixel, black = to fill. ``resize_to`` resizes it as its image was
    (a pixel stays observed where at least half of its area was).

    Raises ``ImageMismatchError`` if the mask's size is not ``size``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such mask file: {path}")
    arr, _ = _pixels(path, "mask", resize=True)
    h, w = arr.shape[:2]
    if (h, w) != tuple(size):
        raise ImageMismatchError(f"mask is {w}x{h} but the image is {size[1]}x{size[0]}; they must match")
    keep = torch.from_numpy(arr.mean(-1) >= 0.5)[None, None]
    if resize_to is not None and tuple(resize_to) != (h, w):
        keep = _resize(keep.float(), tuple(resize_to)) >= 0.5
    return keep


def image_files(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` (by extension, those Pillow reads), sorted by name; not recursive."""
    from PIL import Image

    Image.init()
    readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in readable)


def writable_image_suffixes() -> set[str]:
    """File suffixes (``'.png'``, ...) Pillow can write."""
    from PIL import Image

    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}
