"""Codec motion vectors, the Video-LaVIT recipe, in-process through PyAV (docs/MOTION.md).

A video becomes clips of 24 frames at 6 fps, each a float32 (2, 24, 20, 36) motion tensor (the motion
tokenizer's input) and the uint8 RGB key frame of its first frame. One concept per module:

- ``extract``: the 6 fps MPEG-4 Part 2 re-encode and the decoder's exported motion vectors
  (``iter_motion_frames``, ``MotionFrame``, ``reencode``);
- ``grid``: normalisation, the 16x16 grid, frame-12 interpolation and the 20x36 resize (``motion_grid``,
  ``clip_grids``, ``clip_tensor``);
- ``plans``: which clips (``ClipPlan``, ``default_plan``, ``official_plan``);
- ``clips``: ``extract_clips``, the streaming pipeline of the three (``MotionClip``).

Nothing holds the whole video. Imports torch (the grid's resize), never torchvision.
"""

from .clips import MotionClip, extract_clips
from .extract import ENCODER_THREADS, MV_COLUMNS, MotionFrame, iter_motion_frames, reencode
from .grid import CLIP_FRAMES, MOTION_SIZE, RESIZES, clip_grids, clip_tensor, motion_grid
from .plans import PLANS, ClipPlan, default_plan, official_plan

__all__ = [
    "CLIP_FRAMES",
    "ENCODER_THREADS",
    "MOTION_SIZE",
    "MV_COLUMNS",
    "PLANS",
    "RESIZES",
    "ClipPlan",
    "MotionClip",
    "MotionFrame",
    "clip_grids",
    "clip_tensor",
    "default_plan",
    "extract_clips",
    "iter_motion_frames",
    "motion_grid",
    "official_plan",
    "reencode",
]
