"""The torch-side frame conventions in one place: uint8 frames <-> model tensors, resize, crop, pad.

Decisions (each one a convention the rest of the package relies on):

- Frames at the I/O boundary are uint8 RGB ``(T, H, W, 3)`` (or one ``(H, W, 3)``) arrays.
- Model tensors are ``(1, 3, T, H, W)`` in [-1, 1]: ``x / 127.5 - 1``, which in float32 equals the official
  pipeline's ``(x / 255 - 0.5) / 0.5`` bit for bit. Back to uint8 by clamping to [-1, 1], ``(x + 1) * 127.5``
  in float32 and rounding half to even (``torch.round``).
- Resizing is the official torchvision ``Resize(size, antialias=True)``: the short side becomes ``size``,
  the long side ``int(size * long / short)``, bilinear with antialias, ``align_corners=False``.
- Centre crops use torchvision's offsets ``round((H - h) / 2)`` (Python's round).
- Spatial padding goes to the right and bottom (top-left stays aligned with the source, so unpadding is a
  slice); the pad tuple is in ``torch.nn.functional.pad`` order ``(left, right, top, bottom)``.
- The bench scores frames as float32 ``(T, 3, H, W)`` in [0, 1] ("unit" frames): ``frames_to_unit``,
  ``unit_to_model``, ``model_to_unit``, ``quantize_unit``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .runtime import pin_if_cuda, to_device, to_host_async

__all__ = [
    "center_crop",
    "fit_frame",
    "frames_to_tensor",
    "frames_to_unit",
    "model_to_unit",
    "pad_to_multiple",
    "pinned_frames",
    "quantize_unit",
    "resize_frame",
    "resize_frames",
    "resize_short_side",
    "resized_size",
    "tensor_to_frames",
    "unit_to_model",
    "unpad",
]


# --------------------------------------------------------------------------------------------------
# uint8 frames <-> model tensors
# --------------------------------------------------------------------------------------------------


def frames_to_tensor(
    frames: Sequence[np.ndarray] | Sequence[torch.Tensor] | np.ndarray | torch.Tensor,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Frames (a list of ``(H, W, 3)`` arrays or tensors, or a ``(T, H, W, 3)``/``(H, W, 3)`` array or
    tensor), uint8 or float in [0, 255] (e.g. resized but not rounded, as the bench feeds them) ->
    ``(1, 3, T, H, W)`` in [-1, 1] of ``dtype`` on ``device`` (on CUDA copied asynchronously through
    pinned memory, `runtime.to_device`)."""
    if isinstance(frames, torch.Tensor):
        x = frames
    elif not isinstance(frames, np.ndarray) and len(frames) and isinstance(frames[0], torch.Tensor):
        # frames as tensors (pinned by `pinned_frames`): each copied on its own, stacked on the device
        x = torch.stack([to_device(torch.as_tensor(f), device) for f in frames])
    else:
        arr = frames if isinstance(frames, np.ndarray) else np.stack(frames)
        x = torch.from_numpy(np.ascontiguousarray(arr))
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {tuple(x.shape)}")
    if x.dtype != torch.uint8 and not x.dtype.is_floating_point:
        raise ValueError(f"expected uint8 or float frames, got {x.dtype}")
    x = to_device(x, device)  # uint8 crosses to the device (a quarter of float32), converted there
    return (x.permute(3, 0, 1, 2).unsqueeze(0).to(dtype) / 127.5 - 1.0).contiguous()


def pinned_frames(
    frames: Iterable[np.ndarray], device: torch.device | str
) -> Iterable[np.ndarray] | Iterator[torch.Tensor]:
    """For a CUDA ``device``: each uint8 ``(H, W, 3)`` frame as a tensor in pinned host memory, made
    where the iterator is consumed (a reader thread, `prefetch`), so that ``frames_to_tensor`` copies
    it asynchronously; for any other device ``frames`` itself, untouched."""
    if torch.device(device).type != "cuda":
        return frames
    return (pin_if_cuda(torch.from_numpy(np.ascontiguousarray(f)), device) for f in frames)


def tensor_to_frames(x: torch.Tensor, non_blocking: bool = False) -> np.ndarray:
    """``(1, 3, T, H, W)`` or ``(3, T, H, W)`` in [-1, 1] -> uint8 ``(T, H, W, 3)`` (see the module doc).

    ``non_blocking`` (CUDA): the frames are copied into pinned memory without waiting; the returned
    array holds them only once the device's stream has passed the copy (`runtime.ready_one_behind`).
    """
    if x.ndim == 5:
        if x.shape[0] != 1:
            raise ValueError(f"expected batch size 1, got {tuple(x.shape)}; convert each video separately")
        x = x[0]
    if x.ndim != 4 or x.shape[0] != 3:
        raise ValueError(f"expected (1, 3, T, H, W) or (3, T, H, W), got {tuple(x.shape)}")
    y = ((x.detach().to(torch.float32).clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    y = y.permute(1, 2, 3, 0).contiguous()
    return (to_host_async(y) if non_blocking else y.cpu()).numpy()


# --------------------------------------------------------------------------------------------------
# Resize, crop, pad
# --------------------------------------------------------------------------------------------------


def _as_4d(x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """View a (..., C, H, W) or (B, C, T, H, W) tensor as (N, C, H, W) and return an undo function."""
    if x.ndim == 5:
        b, c, t, h, w = x.shape
        y = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)

        def undo(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(b, t, c, z.shape[-2], z.shape[-1]).permute(0, 2, 1, 3, 4).contiguous()

        return y, undo
    if x.ndim == 4:
        return x, lambda z: z
    if x.ndim == 3:
        return x.unsqueeze(0), lambda z: z[0]
    if x.ndim == 2:
        return x[None, None], lambda z: z[0, 0]
    raise ValueError(f"expected a 2- to 5-dimensional tensor, got shape {tuple(x.shape)}")


def resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Output (height, width) of ``resize_short_side``: short side ``size``, long ``int(size*long/short)``."""
    short, long = (height, width) if height <= width else (width, height)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if height <= width else (new_long, new_short)


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the short side is ``size`` (the official torchvision ``Resize(size, antialias=True)``).

    Works over the last two dims of ``(B, C, T, H, W)``, ``(N, C, H, W)``, ``(C, H, W)`` or ``(H, W)``.
    Float tensors are resized in their dtype; uint8 tensors in float32, rounded (half to even) and
    clamped back to uint8. A tensor that already has the size is returned as it is.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    oh, ow = resized_size(h, w, size)
    if (oh, ow) == (h, w):
        return x
    y, undo = _as_4d(x)
    if y.dtype == torch.uint8:
        z = F.interpolate(y.float(), size=(oh, ow), mode="bilinear", align_corners=False, antialias=True)
        return undo(z.round().clamp(0, 255).to(torch.uint8))
    z = F.interpolate(y, size=(oh, ow), mode="bilinear", align_corners=False, antialias=True)
    return undo(z)


def center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The centre ``h x w`` of the last two dims; offsets ``round((H-h)/2)``, ``round((W-w)/2)`` with
    Python's round, as torchvision's ``center_crop``."""
    H, W = int(x.shape[-2]), int(x.shape[-1])
    if h > H or w > W:
        raise ValueError(f"crop {h}x{w} (HxW) is larger than the frame {H}x{W}")
    top = int(round((H - h) / 2.0))
    left = int(round((W - w) / 2.0))
    return x[..., top : top + h, left : left + w]


def pad_to_multiple(
    x: torch.Tensor, multiple: int, mode: str = "replicate"
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad the last two dims on the right and bottom up to multiples of ``multiple``.

    ``mode``: "replicate" (default), "reflect" or "constant" (zeros). Returns ``(x_padded, pad)`` with
    ``pad = (left, right, top, bottom) = (0, pad_w, 0, pad_h)`` in ``F.pad`` order; ``unpad(x_padded,
    pad)`` restores the original size.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    H, W = int(x.shape[-2]), int(x.shape[-1])
    ph, pw = (-H) % multiple, (-W) % multiple
    pad = (0, pw, 0, ph)
    if ph == 0 and pw == 0:
        return x, pad
    y, undo = _as_4d(x)
    if mode == "constant":
        z = F.pad(y, pad, mode="constant", value=0.0)
    elif y.dtype.is_floating_point:
        z = F.pad(y, pad, mode=mode)
    else:  # replicate/reflect are not implemented for integer tensors
        z = F.pad(y.float(), pad, mode=mode).to(y.dtype)
    return undo(z), pad


def unpad(x: torch.Tensor, pad: Sequence[int]) -> torch.Tensor:
    """Undo ``pad_to_multiple`` (any ``(left, right, top, bottom)`` pad of the last two dims)."""
    left, right, top, bottom = (int(p) for p in pad)
    H, W = int(x.shape[-2]), int(x.shape[-1])
    return x[..., top : H - bottom, left : W - right]


def resize_frame(frame: np.ndarray, size: int | None, crop: bool = False) -> np.ndarray:
    """A uint8 ``(H, W, 3)`` frame with its short side resized to ``size`` (and, with ``crop``, its centre
    ``size x size`` square), as uint8; the frame itself when ``size`` is None or 0."""
    if not size:
        return frame
    x = resize_short_side(torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0).float(), size)
    if crop:
        x = center_crop(x, size, size)
    return x[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def cover_short_side(height: int, width: int, size_hw: tuple[int, int]) -> int:
    """The smallest short-side size at which ``resize_short_side`` makes a ``height x width`` frame cover
    ``size_hw`` (for a square target, its side)."""
    h, w = size_hw
    s = min(h, w)
    while True:
        oh, ow = resized_size(height, width, s)
        if oh >= h and ow >= w:
            return s
        s += 1


def fit_frame(frame: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """A uint8 ``(H, W, 3)`` frame as a fixed-size model takes it: the short side resized (bilinear,
    antialias) so that it covers ``size_hw`` = (h, w), then the centre ``h x w`` crop (for a square target:
    short side ``h``, centre crop, the official evaluation's preprocessing)."""
    h, w = size_hw
    s = cover_short_side(frame.shape[0], frame.shape[1], size_hw)
    x = resize_short_side(torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0).float(), s)
    x = center_crop(x, h, w)
    return x[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` frames resized to ``height x width`` (bilinear, antialias when shrinking),
    as uint8; the frames themselves when they have that size."""
    if frames.shape[1:3] == (height, width):
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


# --------------------------------------------------------------------------------------------------
# The bench's float frames in [0, 1]
# --------------------------------------------------------------------------------------------------


def frames_to_unit(
    frames: Sequence[np.ndarray],
    device: torch.device | str = "cpu",
    size: int | None = None,
    crop: bool = False,
) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` frames -> float32 ``(T, 3, h, w)`` in [0, 1] on ``device``: ``/ 255``, then the
    short side resized to ``size`` and, with ``crop``, the centre ``size x size`` square."""
    x = torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    if size:
        x = resize_short_side(x, size)
        if crop:
            x = center_crop(x, size, size)
    return x.contiguous()


def unit_to_model(gt: torch.Tensor, factor: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(T, 3, H, W)`` in [0, 1] -> ``(1, 3, T, H', W')`` in [-1, 1], padded (replicate, right/bottom) to
    multiples of ``factor``; with the unpadded ``(H, W)``."""
    x = ((gt - 0.5) / 0.5).permute(1, 0, 2, 3).unsqueeze(0)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    x, _ = pad_to_multiple(x, factor)
    return x.contiguous(), (h, w)


def model_to_unit(y: torch.Tensor) -> torch.Tensor:
    """Model output ``(1, 3, T, H, W)`` in [-1, 1] -> float32 ``(T, 3, H, W)`` in [0, 1]."""
    return ((y[0].to(torch.float32).clamp(-1.0, 1.0) + 1.0) / 2.0).permute(1, 0, 2, 3).contiguous()


def quantize_unit(x01: torch.Tensor) -> torch.Tensor:
    """[0, 1] frames -> the 8-bit values ``vidtok decode`` writes, back in [0, 1] (round half to even)."""
    return (x01 * 255.0).round() / 255.0
