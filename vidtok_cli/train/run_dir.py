"""Run directories of ``vidtok train``: their layout, checkpoints and the model card written with them.

Layout (``out``)::

    log.jsonl            one JSON object per line (``LOG_NAME``)
    train_config.json    the options of the run
    step_000100/         a checkpoint every ``save_every`` steps (``step_dir_name``), written atomically
      model.safetensors      weights + metadata (config, card, ``vidtok.train.step``)
      model_ema.safetensors  EMA weights, same metadata
      card.toml              a model card (``zoo.card_from_toml`` reads it)
      state.pt               optimisers, discriminator, loss state, step (``STATE_FORMAT``);
                             ``load_state`` reads it with torch.load(weights_only=True)
    final/               the same at the end; ``load_model(out)`` and ``vidtok encode --model out`` use it
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import atomic, checkpoints, families, zoo
from .._version import __version__
from ..errors import CheckpointError, UsageError, VidtokError

__all__ = [
    "LOG_NAME",
    "STATE_FORMAT",
    "card_name",
    "card_toml",
    "check_new_run",
    "find_checkpoint",
    "load_state",
    "run_card",
    "step_dir_name",
    "trim_log",
    "weights_metadata",
    "write_atomically",
]

STATE_FORMAT = 1
LOG_NAME = "log.jsonl"


def step_dir_name(step: int) -> str:
    """The name of the checkpoint directory of ``step`` (``step_000100``)."""
    return f"step_{step:06d}"


def find_checkpoint(run: str | os.PathLike[str]) -> Path:
    """The newest checkpoint directory of a run (``final/`` or the highest ``step_*``), or the directory
    itself when it is a checkpoint. Raises CheckpointError when there is none."""
    p = Path(run).expanduser()
    if (p / "state.pt").is_file() and (p / "model.safetensors").is_file():
        return p
    if not p.is_dir():
        raise CheckpointError(f"{p}: no such run directory")
    best: tuple[int, Path] | None = None
    for d in [p / "final", *sorted(p.glob("step_*"))]:
        if not ((d / "state.pt").is_file() and (d / "model.safetensors").is_file()):
            continue
        meta = checkpoints.read_safetensors_metadata(d / "model.safetensors")
        step = int(meta.get("vidtok.train.step", "-1"))
        if best is None or step > best[0]:
            best = (step, d)
    if best is None:
        raise CheckpointError(f"{p}: no checkpoint (step_*/ or final/ with model.safetensors and state.pt)")
    return best[1]


def load_state(path: Path) -> dict[str, Any]:
    """The training state saved in ``state.pt``; CheckpointError when it cannot be read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(
            f"{path}: cannot read the training state ({str(e).splitlines()[0][:200]})"
        ) from e


def check_new_run(out: Path, force: bool, remove: bool) -> None:
    """Refuses an ``out`` that already holds a run unless ``force``; then deletes the old run's log and
    checkpoints when ``remove`` (the main process)."""
    existing = [out / LOG_NAME, out / "final", *out.glob("step_*")]
    found = [p for p in existing if p.exists()]
    if found and not force:
        raise UsageError(
            f"{out} already holds a training run; continue it with --resume {out}, "
            "or pass --force to start over"
        )
    if found and force and remove:
        for p in found:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()


def trim_log(log: Path, step: int) -> None:
    """Drops what an interrupted run logged after ``step`` (the checkpoint resumed from), atomically."""
    kept = []
    for line in log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "end" or int(rec.get("step", 0)) > step:
            continue
        kept.append(line)
    atomic.write_text(log, "".join(k + "\n" for k in kept), force=True)


def write_atomically(out: Path, dirname: str, fill: Callable[[Path], None]) -> Path:
    """Creates ``out/dirname`` through a temporary folder that ``fill`` writes, synced and renamed into
    place (replacing an older one); returns the final path."""
    final = out / dirname
    with atomic.atomic_path(final, force=True, directory=True, make_parents=True) as tmp:
        fill(tmp)
    return final


# ---------------------------------------------------------------------------- the run's model card


def card_name(base: str | None, out: Path) -> str:
    """A card name for a run: the base model's name plus the run directory's, not taken by the zoo."""
    run = zoo.normalize_name(out.resolve().name) or "run"
    run = "".join(ch for ch in run if ch.isalnum() or ch in "-.") or "run"
    name = f"{zoo.normalize_name(base)}-{run}" if base else f"vidtok-{run}"
    name = name.lstrip("-.") or "vidtok-run"
    try:
        if zoo.find_card(name) is not None:
            name += "-run"
    except VidtokError:
        pass
    return name


def run_card(a: Any, name: str, base_name: str | None, from_scratch: bool) -> dict[str, Any]:
    """The card fields of a checkpoint of architecture ``a`` (VidTok or VidTwin) trained from ``base_name``."""
    family = families.for_config(a).name
    desc = f"{'VidTwin' if family == 'vidtwin' else 'VidTok'} trained with `vidtok train` "
    desc += f"({'from scratch' if from_scratch else 'fine-tuned'}"
    desc += f" from {base_name})" if base_name else ")"
    if family == "vidtwin":
        return {
            "name": name, "family": family, "version": "v1.0", "description": desc, "causal": False,
            "temporal_factor": a.clip_frames, "spatial_factor": a.spatial_factor, "regularizer": "kl",
            "latent_channels": a.expect_ch, "weights": "model.safetensors",
        }  # fmt: skip
    return {
        "name": name,
        "family": "vidtok",
        "version": a.version,
        "description": desc,
        "causal": a.causal,
        "temporal_factor": a.time_downsample_factor,
        "spatial_factor": a.spatial_factor,
        "regularizer": a.regularizer,
        "latent_channels": a.z_channels,
        "fsq_levels": list(a.fsq_levels),
        "codebook_size": a.codebook_size,
        "weights": "model.safetensors",
    }


def weights_metadata(
    arch: Any, card: dict[str, Any], metrics: dict[str, Any], out: Path, step: int
) -> dict[str, str]:
    """The safetensors metadata of a checkpoint's weights (what ``vidtok convert`` writes, plus the step)."""
    card_meta = {**card, "config": arch.to_dict(), "metrics": metrics, "training_run": str(out)}
    card_meta.pop("weights")
    return {
        checkpoints.META_FORMAT_VERSION: checkpoints.FORMAT_VERSION,
        checkpoints.META_FAMILY: families.for_config(arch).name,
        checkpoints.META_CONFIG: json.dumps(arch.to_dict(), sort_keys=True),
        checkpoints.META_CARD: json.dumps(card_meta, sort_keys=True),
        "vidtok.tool_version": __version__,
        "vidtok.train.step": str(step),
    }


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not (isinstance(v, float) and not math.isfinite(v)) else '"nan"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(i) for i in v) + "]"
    return json.dumps(str(v))


def card_toml(card: dict[str, Any], arch: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The ``card.toml`` of a checkpoint: card fields, ``[architecture]`` and ``[metrics]``."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in card.items() if v is not None]
    lines += ["", "[architecture]"] + [f"{k} = {_toml_value(v)}" for k, v in arch.items()]
    if metrics:
        lines += ["", "[metrics]"] + [f"{k} = {_toml_value(v)}" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"
