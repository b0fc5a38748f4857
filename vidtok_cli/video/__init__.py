"""Video I/O through PyAV (numpy + av only), and the listing of video files.

Reading streams (``iter_frames``) and writing streams (``VideoWriter``): nothing holds the whole video.
One concept per module:

- ``errors``: ``VideoError``;
- ``probing``: ``probe`` and ``VideoInfo`` (opening files and streams);
- ``orientation``: the display matrix (rotation, flips) applied to decoded frames;
- ``reader``: ``iter_frames`` (time span, fps resampling, interval stepping), ``official_interval``;
- ``audio``: ``AudioInfo``, ``AudioPacket``, ``iter_audio_packets``, ``audio_span`` (copy, never re-encode);
- ``writer``: ``VideoWriter`` and ``write_png_frames``;
- ``listing``: ``VIDEO_EXTENSIONS`` and ``list_videos``.

Decisions (each one a convention the rest of the package relies on; details in each module):

- Frames at the I/O boundary are uint8 RGB ``(H, W, 3)`` (or ``(T, H, W, 3)``) numpy arrays, in
  display orientation.
- Time is measured from the video stream's start time.
- Outputs are written atomically (``vidtok_cli.atomic``): an existing file is refused unless ``force``.

The torch side of frames (model tensors, resize, crop, pad) is ``vidtok_cli.frames``. av is imported
inside the functions that need it, so importing this package is cheap; it never imports torch.
"""

from .audio import AudioInfo, AudioPacket, audio_span, iter_audio_packets
from .errors import VideoError
from .listing import VIDEO_EXTENSIONS, list_videos
from .probing import VideoInfo, probe
from .reader import iter_frames, official_interval
from .writer import VideoWriter, write_png_frames

__all__ = [
    "VIDEO_EXTENSIONS",
    "AudioInfo",
    "AudioPacket",
    "VideoError",
    "VideoInfo",
    "VideoWriter",
    "audio_span",
    "iter_audio_packets",
    "iter_frames",
    "list_videos",
    "official_interval",
    "probe",
    "write_png_frames",
]
