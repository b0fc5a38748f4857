"""Loading models: resolve a config and weights reference, build the model, load weights strictly."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import checkpoints, hub, zoo
from ._version import __version__
from .arch.config import ArchConfigError, VidTokConfig
from .errors import CheckpointError, ConfigError, ModelNotFoundError, UsageError, VidtokError

if TYPE_CHECKING:
    import torch

    from .arch.vidtok import VidTokModel

ConfigLike = "str | os.PathLike[str] | Mapping[str, Any] | VidTokConfig | None"

_INTERP = re.compile(r"^\$\{([^}]+)\}$")
_ARCH_KEYS = (
    "ch", "ch_mult", "num_res_blocks", "in_channels", "out_ch", "z_channels", "time_downsample_factor",
    "spatial_ds", "tempo_ds", "spatial_us", "tempo_us", "norm_type", "init_pad_mode", "interpolation_mode",
    "double_z",
)  # fmt: skip


# ----------------------------------------------------------------------------- configs


def _resolve_interpolations(node: Any, root: Mapping[str, Any], where: str, depth: int = 0) -> Any:
    """Replaces OmegaConf-style ``${a.b.c}`` references (whole-value only) by the referenced node."""
    if depth > 20:
        raise ConfigError(f"{where}: interpolation cycle")
    if isinstance(node, str):
        m = _INTERP.match(node.strip())
        if not m:
            return node
        target: Any = root
        for part in m.group(1).strip().split("."):
            if not isinstance(target, Mapping) or part not in target:
                raise ConfigError(f"{where}: cannot resolve {node}")
            target = target[part]
        return _resolve_interpolations(target, root, where, depth + 1)
    if isinstance(node, Mapping):
        return {k: _resolve_interpolations(v, root, where, depth) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_interpolations(v, root, where, depth) for v in node]
    return node


def config_from_official(data: Mapping[str, Any], where: str = "config") -> VidTokConfig:
    """A VidTokConfig from the official YAML structure (model.params.encoder_config, ...)."""
    data = _resolve_interpolations(data, data, where)
    params = data.get("model", {}).get("params") if isinstance(data.get("model"), Mapping) else None
    if params is None and "encoder_config" in data:
        params = data
    if not isinstance(params, Mapping) or "encoder_config" not in params:
        raise ConfigError(f"{where}: not an official VidTok config (no model.params.encoder_config)")
    try:
        enc = params["encoder_config"]
        dec = params.get("decoder_config", enc)
        reg = params.get("regularizer_config")
        if not isinstance(reg, Mapping) or "target" not in reg:
            raise ConfigError(f"{where}: regularizer_config.target is missing")
        enc_params = dict(enc.get("params") or {})
        dec_params = dict(dec.get("params") or {})
        for key in _ARCH_KEYS:
            if key in dec_params and key in enc_params and dec_params[key] != enc_params[key]:
                raise ConfigError(f"{where}: decoder {key} differs from the encoder's ({dec_params[key]!r})")
        if "target" not in enc:
            raise ConfigError(f"{where}: encoder_config.target is missing")
        return VidTokConfig.from_official(enc["target"], enc_params, reg["target"], reg.get("params") or {})
    except (ArchConfigError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{where}: {e}") from e


def _config_from_mapping(data: Mapping[str, Any], where: str) -> VidTokConfig:
    if "model" in data or "encoder_config" in data:
        return config_from_official(data, where)
    if "architecture" in data and isinstance(data["architecture"], Mapping):
        data = data["architecture"]
    try:
        return VidTokConfig.from_dict(dict(data))
    except (ArchConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


def resolve_config(config: Any) -> tuple[VidTokConfig | None, zoo.ModelCard | None]:
    """(config, card) for a zoo name, a YAML/TOML/JSON path, a dict or a VidTokConfig; (None, None) for None."""
    if config is None:
        return None, None
    if isinstance(config, VidTokConfig):
        return config, None
    if isinstance(config, Mapping):
        return _config_from_mapping(config, "config"), None
    path = Path(os.fspath(config))
    if path.is_file():
        suffix = path.suffix.lower()
        try:
            if suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(path.read_text())
            elif suffix == ".toml":
                card = zoo.card_from_toml(path)
                return card.config, card
            elif suffix == ".json":
                data = json.loads(path.read_text())
            else:
                raise ConfigError(f"{path}: unknown config format (use .yaml, .toml or .json)")
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: cannot read config: {str(e).splitlines()[0]}") from e
        except Exception as e:  # yaml.YAMLError and friends
            if isinstance(e, VidtokError):
                raise
            raise ConfigError(f"{path}: cannot parse config: {str(e).splitlines()[0]}") from e
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: the config is not a mapping")
        return _config_from_mapping(data, str(path)), None
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


def _config_from_metadata(meta: Mapping[str, str], path: Path) -> VidTokConfig | None:
    raw = meta.get(checkpoints.META_CONFIG)
    if not raw:
        return None
    try:
        return VidTokConfig.from_dict(json.loads(raw))
    except (ValueError, TypeError, ArchConfigError) as e:
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


def _choose_config(
    explicit: VidTokConfig | None, meta_cfg: VidTokConfig | None, card: zoo.ModelCard | None, path: Path
) -> VidTokConfig:
    if explicit is not None:
        return explicit
    if meta_cfg is not None:
        return meta_cfg
    if card is not None and card.family == "vidtok":
        return card.config
    raise ConfigError(
        f"cannot tell the architecture of {path}: its name matches no zoo model and it carries no config; "
        "pass a config (--config, or config= in Python: a zoo name, an official YAML file or a dict)"
    )


def _check_fit(state_dict: Mapping[str, Any], cfg: VidTokConfig, path: Path) -> None:
    """Raises CheckpointError unless the tensors match the architecture's keys and shapes exactly."""
    import torch

    from .arch.vidtok import VidTokModel

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in VidTokModel(cfg).state_dict().items()}
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
    cfg: VidTokConfig, state_dict: Mapping[str, torch.Tensor], path: Path, device: Any, dtype: Any
) -> VidTokModel:
    """A model for ``cfg`` holding exactly ``state_dict`` (strict), on ``device`` in ``dtype``."""
    import torch

    from .arch.regularizers import FSQ, DiagonalGaussian
    from .arch.vidtok import VidTokModel

    _check_fit(state_dict, cfg, path)
    with torch.device("meta"):
        model = VidTokModel(cfg)
    model.regularization = FSQ(cfg.fsq_levels) if cfg.regularizer == "fsq" else DiagonalGaussian()
    tensors = {k: v.to(device=device, dtype=dtype) for k, v in state_dict.items()}
    model.load_state_dict(tensors, strict=True, assign=True)
    model.to(device=device)
    return model.eval()


def _parse_dtype(dtype: Any) -> torch.dtype:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
             "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}  # fmt: skip
    if str(dtype).lower() not in names:
        raise UsageError(f"unknown dtype {dtype!r} (use fp32, fp16 or bf16)")
    return names[str(dtype).lower()]


def resolve_device(device: Any = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as torch understands it."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise UsageError(f"unknown device {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda was asked for but CUDA is not available")
    return dev


def load_model(
    weights: str | os.PathLike[str] | None = None,
    config: Any = None,
    device: Any = "cpu",
    dtype: Any = "float32",
) -> VidTokModel:
    """Loads a VidTok model ready for inference (eval mode).

    ``weights``: a zoo name (``vidtok models``), a local ``.ckpt``/``.safetensors`` file, a training run
    directory, or ``hf://owner/repo/path/file.ckpt[@revision]``; ``None`` loads the default model.
    ``config``: a zoo name, an official VidTok YAML file, a card TOML, or the same structure as a dict;
    needed only when the weights carry no config and their file name matches no zoo card.
    The returned model has ``encode(x)``, ``decode(latent)``, ``decode_indices(indices)`` and the streaming
    ``encode_chunk``/``decode_chunk``; ``model.card`` describes where it came from.
    """
    torch_dtype = _parse_dtype(dtype)
    dev = resolve_device(device)
    explicit_cfg, explicit_card = resolve_config(config)
    source = resolve_weights(weights)
    state_dict, meta = checkpoints.read_state_dict(source.path)
    card = source.card or explicit_card
    cfg = _choose_config(explicit_cfg, _config_from_metadata(meta, source.path), card, source.path)
    model = build_from_state_dict(cfg, state_dict, source.path, dev, torch_dtype)
    card_info: dict[str, Any] = {}
    if card is not None:
        card_info = card.to_dict()
    elif (embedded := _card_from_metadata(meta)) is not None:
        card_info = embedded
    card_info.setdefault("name", source.path.stem)
    card_info["weights_file"] = str(source.path)
    card_info["weights_reference"] = source.reference
    model.card = card_info
    return model


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
    if dst_path.exists() and not force:
        raise VidtokError(f"{dst_path} exists; pass --force to overwrite it")
    if dst_path.suffix.lower() != ".safetensors":
        raise UsageError(f"the output must end in .safetensors: {dst_path}")
    if not src_path.is_file():
        raise ModelNotFoundError(f"checkpoint {src_path} does not exist")
    explicit_cfg, explicit_card = resolve_config(config)
    card = card or explicit_card or zoo.card_for_file(src_path)
    state_dict, meta = checkpoints.read_state_dict(src_path)
    cfg = _choose_config(explicit_cfg, _config_from_metadata(meta, src_path), card, src_path)
    _check_fit(state_dict, cfg, src_path)
    if dtype is not None:
        torch_dtype = _parse_dtype(dtype)
        state_dict = {k: v.to(torch_dtype) for k, v in state_dict.items()}
    metadata = {
        checkpoints.META_FORMAT_VERSION: checkpoints.FORMAT_VERSION,
        checkpoints.META_CONFIG: json.dumps(cfg.to_dict(), sort_keys=True),
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
