"""Orientation of decoded frames from the container's display matrix (phone videos).

Decision: frames are returned in display orientation, the display matrix applied the way the ``ffmpeg``
command line applies it (autorotate): 90/180/270 degree rotations and flips; other angles are ignored
(the frame is left as stored).
"""

from __future__ import annotations

import math
import struct

import numpy as np

_TRANSPOSING = {"clock", "cclock", "cclock_flip", "clock_flip"}


def _display_matrix(frame) -> tuple[int, ...] | None:
    for sd in frame.side_data:
        if getattr(sd.type, "name", str(sd.type)).upper().endswith("DISPLAYMATRIX"):
            raw = bytes(sd)
            if len(raw) >= 36:
                return struct.unpack("=9i", raw[:36])
    return None


def _rotation_get(m: tuple[int, ...]) -> float | None:
    """FFmpeg's av_display_rotation_get: counter-clockwise degrees, or None for a degenerate matrix."""
    fp = [x / 65536.0 for x in m]
    s0 = math.hypot(fp[0], fp[3])
    s1 = math.hypot(fp[1], fp[4])
    if s0 == 0 or s1 == 0:
        return None
    return -math.degrees(math.atan2(fp[1] / s1, fp[0] / s0))


def _display_rotation(m: tuple[int, ...] | None) -> int:
    if m is None:
        return 0
    r = _rotation_get(m)
    return 0 if r is None else int(round(r))


def _orientation_op(m: tuple[int, ...] | None) -> str:
    """The transform ffmpeg (fftools, autorotate) applies for this display matrix.

    Returns "", "clock", "cclock", "cclock_flip", "clock_flip", "hflip", "vflip" or "hvflip".
    """
    if m is None:
        return ""
    r = _rotation_get(m)
    if r is None:
        return ""
    theta = -round(r)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return "cclock_flip" if m[3] > 0 else "clock"
    if abs(theta - 180) < 1:
        h, v = m[0] < 0, m[4] < 0
        return "hvflip" if h and v else "hflip" if h else "vflip" if v else ""
    if abs(theta - 270) < 1:
        return "clock_flip" if m[3] < 0 else "cclock"
    if abs(theta) < 1 or abs(theta - 360) < 1:
        return "vflip" if m[4] < 0 else ""
    return ""  # arbitrary angles: ffmpeg inserts a rotate filter; we leave the frame as stored


def _apply_orientation(img: np.ndarray, op: str) -> np.ndarray:
    if not op:
        return img
    if op == "clock":
        out = np.rot90(img, -1)
    elif op == "cclock":
        out = np.rot90(img, 1)
    elif op == "cclock_flip":  # rotate 90 counter-clockwise, then flip vertically = transpose
        out = img.transpose(1, 0, 2)
    elif op == "clock_flip":  # rotate 90 clockwise, then flip vertically = anti-transpose
        out = img[::-1, ::-1].transpose(1, 0, 2)
    elif op == "hflip":
        out = img[:, ::-1]
    elif op == "vflip":
        out = img[::-1]
    elif op == "hvflip":
        out = img[::-1, ::-1]
    else:  # pragma: no cover
        raise ValueError(op)
    return np.ascontiguousarray(out)
