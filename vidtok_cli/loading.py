"""Loading models of any registered family: resolve a config and a weights reference, build the family's
module, load the weights strictly, and return the family's `Tokenizer` with its provenance."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import checkpoints, families, hub, zoo
from ._version import __version__
from .atomic import refuse_existing
from .errors import (
    CheckpointError,
    ConfigError,
    ModelNotFoundError,
    UsageError,
    VidtokError,
    WeightsUnavailableError,
)
from .official_config import read_config_file
from .runtime import resolve_device, reuse_freed_memory, torch_dtype

if TYPE_CHECKING:
    import torch

    from .tokenizer import ModuleTokenizer

__all__ = [
    "convert_checkpoint",
    "load_for_file",
    "load_model",
    "resolve_config",
    "resolve_device",
    "resolve_weights",
]


class DroppedKeysWarning(UserWarning):
    """A checkpoint held tensors outside the family's modules; they were not loaded."""


# ----------------------------------------------------------------------------- configs


def config_from_official(data: Mapping[str, Any], where: str = "config") -> Any:
    """The config of the family whose official config file has this structure."""
    return families.official_config(data, where)[1]


def _config_from_mapping(data: Mapping[str, Any], where: str) -> Any:
    """A config from an official structure, a card-like ``{family, architecture}`` or a bare table."""
    if "model" in data or "encoder_config" in data or families.official_family(data) is not None:
        return config_from_official(data, where)
    family = str(data.get("family", "vidtok"))
    if "architecture" in data and isinstance(data["architecture"], Mapping):
        data = data["architecture"]
    try:
        return families.get(family).config_from_dict(dict(data))
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


def resolve_config(config: Any) -> tuple[Any, zoo.ModelCard | None]:
    """(config, card) for a zoo name, a YAML/TOML/JSON path, a dict or a family config; (None, None) for None."""
    if config is None:
        return None, None
    if isinstance(config, Mapping):
        return _config_from_mapping(config, "config"), None
    if not isinstance(config, (str, os.PathLike)):
        families.for_config(config)  # raises for an object that is no family's config
        return config, None
    path = Path(os.fspath(config))
    if path.is_file():
        if path.suffix.lower() == ".toml":
            card = zoo.card_from_toml(path)
            return card.config, card
        return _config_from_mapping(read_config_file(path), str(path)), None
    card = zoo.find_card(str(config))
    if card is None:
        raise ModelNotFoundError(
            f"config {config!r} is neither a file nor a zoo model name (see `vidtok models`)"
        )
    return card.config, card


# ----------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class WeightsSource:
    """Where weights were found: a local file, and the card it belongs to, if any."""

    path: Path
    card: zoo.ModelCard | None
    reference: str


def _hub_weights(card: zoo.ModelCard) -> Path:
    """The card's Hub checkpoint as a cached safetensors conversion (download and convert once)."""
    assert card.hub_repo and card.hub_file
    local = hub.download(
        card.hub_repo, card.hub_file, card.hub_revision, sha256=card.sha256, what=f"weights for {card.name}"
    )
    if local.suffix.lower() == ".safetensors":
        return local
    converted = hub.converted_path(hub.file_sha256(local), card.name)
    if not converted.is_file():
        convert_checkpoint(local, converted, config=card.config, card=card, force=True)
    return converted


def weights_cached(card: zoo.ModelCard) -> bool:
    """Whether the card's weights are on this machine (shipped, converted, or in the Hub cache)."""
    if card.weights_path is not None:
        return card.weights_path.is_file()
    if not (card.hub_repo and card.hub_file):
        return False
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(card.hub_repo, card.hub_file, revision=card.hub_revision)
    except Exception:  # noqa: BLE001 - a broken cache just means "not cached"
        return False
    return isinstance(found, str)


def resolve_weights(weights: str | os.PathLike[str] | None) -> WeightsSource:
    """Local weights file for a zoo name, a local path or an ``hf://owner/repo/file[@rev]`` reference."""
    if weights is None:
        default = next((c for c in zoo.list_cards() if c.default), None)
        if default is None:
            raise UsageError(
                "no model given and no default model is installed; pass a zoo name or a weights file"
            )
        weights = default.name
    ref = os.fspath(weights)
    parsed = hub.parse_hub_ref(ref)
    if parsed is not None:
        repo, filename, revision = parsed
        local = hub.download(repo, filename, revision)
        return WeightsSource(local, zoo.card_for_file(filename), ref)
    path = Path(ref).expanduser()
    if path.is_dir():
        for name in ("model.safetensors", "final/model.safetensors"):
            if (path / name).is_file():
                return WeightsSource(path / name, zoo.card_for_file(path / name), ref)
        raise ModelNotFoundError(f"{path} is a directory without a model.safetensors")
    if path.is_file():
        return WeightsSource(path, zoo.card_for_file(path), ref)
    card = zoo.find_card(ref)
    if card is None:
        if any(sep in ref for sep in ("/", os.sep)) or Path(ref).suffix:
            raise ModelNotFoundError(f"weights file {ref} does not exist")
        zoo.get_card(ref)  # raises with suggestions
    assert card is not None
    if card.weights_path is not None:
        if not card.weights_path.is_file():
            raise ModelNotFoundError(f"weights of {card.name} are missing: {card.weights_path}")
        if card.sha256 is not None:
            got = hub.file_sha256(card.weights_path)
            if got != card.sha256:
                raise CheckpointError(
                    f"weights of {card.name} ({card.weights_path}) are damaged: sha256 {got[:12]}... "
                    f"differs from the card's {card.sha256[:12]}...; reinstall vidtok"
                )
        return WeightsSource(card.weights_path, card, ref)
    if not (card.hub_repo and card.hub_file):
        raise ConfigError(f"model card {card.path} names no weights and no Hub file")
    return WeightsSource(_hub_weights(card), card, ref)


def _config_from_metadata(meta: Mapping[str, str], path: Path) -> Any:
    raw = meta.get(checkpoints.META_CONFIG)
    if not raw:
        return None
    family = meta.get(checkpoints.META_FAMILY, "vidtok")
    try:
        return families.get(family).config_from_dict(json.loads(raw))
    except (ValueError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{path}: the embedded architecture config is invalid: {e}") from e


def _card_from_metadata(meta: Mapping[str, str]) -> dict[str, Any] | None:
    raw = meta.get(checkpoints.META_CARD)
    if not raw:
        return None
    try:
        card = json.loads(raw)
    except ValueError:
        return None
    return card if isinstance(card, dict) else None


def _card_if_fits(card: zoo.ModelCard | None, explicit_cfg: Any) -> zoo.ModelCard | None:
    """A card found by the weights file's name, unless an explicit config describes another architecture
    (e.g. a reduced model saved as ``motion_tokenizer.bin``)."""
    if card is None or explicit_cfg is None:
        return card
    try:
        return card if card.config == explicit_cfg else None
    except ConfigError:
        return None


def _choose_config(explicit: Any, meta_cfg: Any, card: zoo.ModelCard | None, path: Path) -> Any:
    if explicit is not None:
        return explicit
    if meta_cfg is not None:
        return meta_cfg
    if card is not None:
        return card.config
    raise ConfigError(
        f"cannot tell the architecture of {path}: its name matches no zoo model and it carries no config; "
        "pass a config (--config, or config= in Python: a zoo name, an official YAML file or a dict)"
    )


def _build_empty(fam: families.Family, cfg: Any) -> Any:
    """The family's module for ``cfg`` on the meta device (no memory, no initialisation)."""
    import torch

    with torch.device("meta"):
        module = fam.build(cfg)
    if fam.finish_meta is not None:
        fam.finish_meta(module, cfg)
    return module


def _split_keys(fam: families.Family, state_dict: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The tensors under the family's prefixes; other keys are reported (training-only keys silently)."""
    own = {k: v for k, v in state_dict.items() if k.startswith(fam.key_prefixes)}
    other = sorted(k for k in state_dict if k not in own and not k.startswith(fam.training_prefixes))
    if not own:
        present = sorted({k.split(".", 1)[0] for k in state_dict})[:8]
        raise CheckpointError(
            f"{path}: no {fam.name} weights ({', '.join(p + '*' for p in fam.key_prefixes)}) in it "
            f"(top-level names: {', '.join(present) or 'none'})"
        )
    if other:
        groups = sorted({k.split(".", 1)[0] for k in other})
        warnings.warn(
            f"{path}: {len(other)} tensors outside the {fam.name} model were not loaded "
            f"(top-level names: {', '.join(groups[:8])})",
            DroppedKeysWarning,
            stacklevel=3,
        )
    return own


def _check_fit(state_dict: Mapping[str, Any], fam: families.Family, cfg: Any, path: Path) -> None:
    """Raises CheckpointError unless the tensors match the architecture's keys and shapes exactly."""
    expected = {k: tuple(v.shape) for k, v in _build_empty(fam, cfg).state_dict().items()}
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [k for k in expected if k in state_dict and tuple(state_dict[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} of another shape (e.g. {k}: {tuple(state_dict[k].shape)} vs {expected[k]})"
            )
        raise CheckpointError(f"{path}: the weights do not fit the architecture: " + "; ".join(parts))


def build_from_state_dict(
    cfg: Any, state_dict: Mapping[str, torch.Tensor], path: Path, device: Any, dtype: Any
) -> Any:
    """The family module for ``cfg`` holding exactly ``state_dict`` (strict), on ``device`` in ``dtype``."""
    fam = families.for_config(cfg)
    _check_fit(state_dict, fam, cfg, path)
    module = _build_empty(fam, cfg)
    import torch

    # float64 tensors of the architecture (VidTwin's sin-cos tables) stay float64
    f64 = {k for k, v in module.state_dict().items() if v.dtype == torch.float64}
    tensors = {
        k: v.to(device=device, dtype=torch.float64 if k in f64 else dtype) for k, v in state_dict.items()
    }
    module.load_state_dict(tensors, strict=True, assign=True)
    module.to(device=device)
    return module.eval()


def _weightless(weights: Any, config: Any) -> families.Family | None:
    """The family named by ``weights`` when it needs no weights file (``trivial``)."""
    if config is not None or not isinstance(weights, str) or Path(weights).exists():
        return None
    name = zoo.normalize_name(weights)
    if name in families.names() and families.get(name).weightless:
        return families.get(name)
    return None


def load_model(
    weights: str | os.PathLike[str] | None = None,
    config: Any = None,
    device: Any = "cpu",
    dtype: Any = "float32",
) -> ModuleTokenizer:
    """Loads a model of any family, ready for inference (eval mode), as its `Tokenizer`.

    ``weights``: a zoo name (``vidtok models``), a local ``.ckpt``/``.safetensors`` file, a training run
    directory, ``hf://owner/repo/path/file.ckpt[@revision]``, or ``trivial`` (the baseline codec, no
    weights); ``None`` loads the default model. ``config``: a zoo name, an official config file (YAML),
    a card TOML, or the same structure as a dict; needed only when the weights carry no config and their
    file name matches no zoo card. The tokenizer's ``card``, ``weights_path`` and ``weights_sha256`` say
    where it came from.
    """
    torch_dt = torch_dtype(dtype)
    dev = resolve_device(device)
    reuse_freed_memory()
    fam = _weightless(weights, config)
    if fam is not None:
        cfg = fam.default_config()
        return fam.wrap(fam.build(cfg).to(device=dev, dtype=torch_dt).eval(), {"name": fam.name})
    explicit_cfg, explicit_card = resolve_config(config)
    source = resolve_weights(weights)
    raw, meta = checkpoints.read_state_dict(source.path, prefixes=None)
    card = _card_if_fits(source.card, explicit_cfg) or explicit_card
    cfg = _choose_config(explicit_cfg, _config_from_metadata(meta, source.path), card, source.path)
    fam = families.for_config(cfg)
    module = build_from_state_dict(cfg, _split_keys(fam, raw, source.path), source.path, dev, torch_dt)
    card_info: dict[str, Any] = {}
    if card is not None:
        card_info = card.to_dict()
    elif (embedded := _card_from_metadata(meta)) is not None:
        card_info = embedded
    card_info.setdefault("name", source.path.stem)
    card_info.setdefault("family", fam.name)
    card_info.setdefault("config", fam.config_to_dict(cfg))
    card_info["weights_file"] = str(source.path)
    card_info["weights_reference"] = source.reference
    return fam.wrap(module, card_info, source.path)


def load_for_file(
    card_name: str,
    sha256: str,
    weights_file: str | None = None,
    weights_reference: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    device: Any = "cpu",
    where: str = "the file",
    config: Any = None,
) -> ModuleTokenizer:
    """The model a .vtok file was made with, found by the sha256 of its weights.

    In order: ``weights`` when given (used as is); the local weights index (``hub.find_weights``); the
    weights file recorded at encode time; the zoo or the Hub by card name (then ``weights_reference``).
    A candidate whose sha256 differs is skipped. Raises ModelNotFoundError naming ``--weights PATH``
    when nothing matches. ``config``: the architecture (a dict) for weights files that carry none, as the
    file recorded it; used for the indexed and recorded files only.
    """
    if weights is not None:
        return load_model(weights, device=device)
    want = (sha256 or "").strip().lower()
    candidates: list[str] = []
    if want and (indexed := hub.find_weights(want)) is not None:
        candidates.append(str(indexed))
    if weights_file and Path(weights_file).is_file():
        candidates.append(str(weights_file))
    reasons: dict[str, str] = {}
    other: tuple[str, str] | None = None  # (candidate, its sha256): the first one with other weights
    files = set(candidates)
    candidates.append(card_name)
    if weights_reference and weights_reference != card_name:
        candidates.append(weights_reference)
    for cand in dict.fromkeys(candidates):
        try:
            m = load_model(cand, config=config if cand in files else None, device=device)
        except (ModelNotFoundError, WeightsUnavailableError, CheckpointError, ConfigError) as e:
            reasons[cand] = str(e)
            continue
        have = m.weights_sha256
        if not want or not have or have == want:
            return m
        other = other or (cand, have)
    if other is not None:
        raise ModelNotFoundError(
            f"{where} was made with other weights for {card_name!r} (sha256 {want[:12]}..., {other[0]} has "
            f"{other[1][:12]}...); pass --weights PATH to decode with these anyway"
        )
    reason = reasons.get(card_name) or next(iter(reasons.values()), "")
    raise ModelNotFoundError(
        f"{where} was made with weights {card_name!r} (sha256 {want[:12] or '?'}...) that are not on this "
        f"machine ({reason}); pass --weights PATH"
    )


# ----------------------------------------------------------------------------- conversion


def convert_checkpoint(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    config: Any = None,
    card: zoo.ModelCard | None = None,
    dtype: Any = None,
    force: bool = False,
) -> Path:
    """Writes the model weights of ``src`` to a self-describing ``.safetensors`` file at ``dst``.

    The metadata holds the architecture config, the model card (when known), the source file name and
    its sha256, so ``load_model(dst)`` needs nothing else. Returns ``dst``.
    """
    src_path, dst_path = Path(src), Path(dst)
    refuse_existing(dst_path, force, VidtokError)
    if dst_path.suffix.lower() != ".safetensors":
        raise UsageError(f"the output must end in .safetensors: {dst_path}")
    if not src_path.is_file():
        raise ModelNotFoundError(f"checkpoint {src_path} does not exist")
    explicit_cfg, explicit_card = resolve_config(config)
    card = card or explicit_card or _card_if_fits(zoo.card_for_file(src_path), explicit_cfg)
    raw, meta = checkpoints.read_state_dict(src_path, prefixes=None)
    cfg = _choose_config(explicit_cfg, _config_from_metadata(meta, src_path), card, src_path)
    fam = families.for_config(cfg)
    state_dict = _split_keys(fam, raw, src_path)
    _check_fit(state_dict, fam, cfg, src_path)
    if dtype is not None:
        dt = torch_dtype(dtype)
        # float64 tensors (VidTwin's sin-cos tables) are exact tables, not weights: they stay float64
        state_dict = {k: v if str(v.dtype) == "torch.float64" else v.to(dt) for k, v in state_dict.items()}
    metadata = {
        checkpoints.META_FORMAT_VERSION: checkpoints.FORMAT_VERSION,
        checkpoints.META_FAMILY: fam.name,
        checkpoints.META_CONFIG: json.dumps(fam.config_to_dict(cfg), sort_keys=True),
        checkpoints.META_SOURCE_FILE: src_path.name,
        checkpoints.META_SOURCE_SHA256: hub.file_sha256(src_path),
        "vidtok.tool_version": __version__,
    }
    if card is not None:
        metadata[checkpoints.META_CARD] = json.dumps(card.to_dict(), sort_keys=True, default=str)
    elif (embedded := meta.get(checkpoints.META_CARD)) is not None:
        metadata[checkpoints.META_CARD] = embedded
    checkpoints.save_safetensors(state_dict, dst_path, metadata)
    return dst_path
