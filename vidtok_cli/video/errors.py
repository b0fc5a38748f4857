"""The error type of video I/O, and the one-line reason of an FFmpeg failure."""

from __future__ import annotations

from ..errors import VidtokError


class VideoError(VidtokError):
    """A video (or audio) file that cannot be read or written; the message names the file."""


def _ffmpeg_reason(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).split(";")[0].strip() or type(e).__name__
