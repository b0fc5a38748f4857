"""The model zoo: one TOML card per checkpoint in ``models/`` (installed as ``vidtok_cli/_models``).

A card is data: what the model is (family, version, causal, compression factors, latent), where its
weights live (Hugging Face repo and file, or a weights file next to the card), the architecture
config (a :class:`~vidtok_cli.arch.config.VidTokConfig` table) and the published metrics.

This module must stay cheap to import (``vidtok models`` uses it): no torch, no network.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidtok_cli import families
from vidtok_cli.errors import ConfigError, ModelNotFoundError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ModelCard",
    "card_for_file",
    "card_from_toml",
    "cards_dir",
    "clear_cache",
    "find_card",
    "get_card",
    "list_cards",
    "normalize_name",
]

ENV_MODELS_DIR = "VIDTOK_MODELS_DIR"

# Order of the official checkpoints in the VidTok README tables (v1.0 table, then v1.1 table, then the
# v1.1 checkpoints that have no published numbers). Used only to sort listings; unknown names go last.
_README_ORDER: tuple[str, ...] = (
    "vidtok_kl_causal_488_4chn",
    "vidtok_kl_causal_488_8chn",
    "vidtok_kl_causal_488_16chn",
    "vidtok_kl_causal_288_8chn",
    "vidtok_kl_causal_444_4chn",
    "vidtok_kl_causal_41616_4chn",
    "vidtok_kl_noncausal_488_4chn",
    "vidtok_kl_noncausal_488_16chn",
    "vidtok_kl_noncausal_41616_4chn",
    "vidtok_kl_noncausal_41616_16chn",
    "vidtok_fsq_causal_488_262144",
    "vidtok_fsq_causal_488_32768",
    "vidtok_fsq_causal_488_4096",
    "vidtok_fsq_causal_41616_262144",
    "vidtok_fsq_noncausal_488_262144",
    "vidtok_fsq_noncausal_41616_262144",
    "vidtok_kl_causal_488_16chn_v1_1",
    "vidtok_kl_causal_41616_16chn_v1_1",
    "vidtok_kl_causal_288_8chn_v1_1",
    "vidtok_fsq_causal_488_32768_v1_1",
    "vidtok_fsq_causal_888_32768_v1_1",
    "vidtok_kl_causal_488_4chn_v1_1",
    "vidtok_fsq_causal_41616_262144_v1_1",
)

# Suffixes stripped from a weights file name before matching it to a card.
_WEIGHT_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth", ".bin")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

_TOP_KEYS = {
    "name",
    "family",
    "version",
    "official_name",
    "description",
    "causal",
    "temporal_factor",
    "spatial_factor",
    "regularizer",
    "latent_channels",
    "fsq_levels",
    "codebook_size",
    "official_config",
    "default",
    "weights",
    "sha256",
    "training",
    "hub",
    "architecture",
    "metrics",
}
_HUB_KEYS = {"repo", "file", "revision", "sha256"}


def normalize_name(name: str) -> str:
    """The lookup key of a model name: lowercase, ``_`` and ``.`` replaced by ``-``, spaces trimmed."""
    return name.strip().lower().replace("_", "-").replace(".", "-")


@dataclass(frozen=True)
class ModelCard:
    """One model of the zoo, as described by its TOML card (see ``models/*.toml``).

    ``hub_repo``/``hub_file``/``hub_revision`` are ``None`` for a card without a ``[hub]`` table (a model
    whose weights ship beside the card, named by ``weights``). ``sha256`` is the expected sha256 of the
    weights file (``[hub]`` or top-level for shipped weights), ``None`` while unknown. ``training``
    records how a model trained by this project was made (command, data, steps).
    """

    name: str
    family: str
    version: str
    official_name: str | None
    description: str
    causal: bool
    temporal_factor: int
    spatial_factor: int
    regularizer: str
    latent_channels: int
    fsq_levels: tuple[int, ...]
    codebook_size: int | None
    hub_repo: str | None
    hub_file: str | None
    hub_revision: str | None
    sha256: str | None
    metrics: dict[str, float | str] = field(hash=False)
    official_config: str | None
    path: Path
    architecture: dict[str, Any] = field(hash=False, repr=False)
    default: bool = False
    weights: str | None = None
    training: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)

    @functools.cached_property
    def config(self) -> Any:
        """The architecture config of the card's family, built from its ``[architecture]`` table."""
        try:
            return families.get(self.family).config_from_dict(dict(self.architecture))
        except (ConfigError, TypeError, ValueError) as exc:
            raise ConfigError(f"model card {self.path}: [architecture]: {exc}") from exc

    @property
    def weights_path(self) -> Path | None:
        """Absolute path of the weights shipped beside the card, or ``None`` when the card names none."""
        if self.weights is None:
            return None
        return (self.path.parent / self.weights).resolve()

    @property
    def compression(self) -> str:
        """The video compression ratio ``TxHxW`` (e.g. ``4x8x8``)."""
        return f"{self.temporal_factor}x{self.spatial_factor}x{self.spatial_factor}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view of the card (the architecture config included under ``config``)."""
        config = self.config.to_dict()
        return {
            "name": self.name,
            "family": self.family,
            "version": self.version,
            "official_name": self.official_name,
            "description": self.description,
            "default": self.default,
            "causal": self.causal,
            "temporal_factor": self.temporal_factor,
            "spatial_factor": self.spatial_factor,
            "compression": self.compression,
            "regularizer": self.regularizer,
            "latent_channels": self.latent_channels,
            "fsq_levels": list(self.fsq_levels),
            "codebook_size": self.codebook_size,
            "hub": {
                "repo": self.hub_repo,
                "file": self.hub_file,
                "revision": self.hub_revision,
            },
            "sha256": self.sha256,
            "weights": str(self.weights_path) if self.weights_path is not None else None,
            "official_config": self.official_config,
            "metrics": dict(self.metrics),
            "training": dict(self.training),
            "config": config,
            "path": str(self.path),
        }


# ----------------------------------------------------------------------------------- card parsing
class _Fields:
    """Typed access to one TOML table; every problem becomes a ConfigError naming the file."""

    def __init__(self, path: Path, table: dict[str, Any], where: str = "") -> None:
        self.path = path
        self.table = table
        self.where = where

    def fail(self, msg: str) -> ConfigError:
        return ConfigError(f"model card {self.path}: {self.where}{msg}")

    def get(
        self, key: str, kind: type | tuple[type, ...], *, required: bool = True, default: Any = None
    ) -> Any:
        if key not in self.table:
            if required:
                raise self.fail(f"missing key {key!r}")
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is a subclass of int; TOML keeps them apart, so do we
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        else:
            ok = isinstance(value, kinds)
        if not ok:
            names = " or ".join(k.__name__ for k in kinds)
            raise self.fail(f"{key!r} must be {names}, got {type(value).__name__} {value!r}")
        return value

    def text(self, key: str, *, required: bool = True, empty_is_none: bool = False) -> str | None:
        value = self.get(key, str, required=required)
        if value is None:
            return None
        if value == "":
            if empty_is_none:
                return None
            raise self.fail(f"{key!r} must not be empty")
        return value

    def positive_int(self, key: str) -> int:
        value = self.get(key, int)
        if value <= 0:
            raise self.fail(f"{key!r} must be positive, got {value}")
        return value


def _parse_card(path: Path, data: dict[str, Any]) -> ModelCard:
    top = _Fields(path, data)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise top.fail(f"unknown key(s) {', '.join(unknown)}")

    name = top.text("name")
    assert name is not None
    if not _NAME_RE.match(name):
        raise top.fail(f"name {name!r} must be lowercase letters, digits, '-' and '.'")
    family = top.text("family")
    version = top.text("version")
    official_name = top.text("official_name", required=False, empty_is_none=True)
    description = top.text("description")
    causal = top.get("causal", bool)
    temporal_factor = top.positive_int("temporal_factor")
    spatial_factor = top.positive_int("spatial_factor")
    regularizer = top.text("regularizer")
    latent_channels = top.positive_int("latent_channels")
    levels_raw = top.get("fsq_levels", list, required=False, default=[])
    if any(isinstance(v, bool) or not isinstance(v, int) for v in levels_raw):
        raise top.fail(f"'fsq_levels' must be a list of integers, got {levels_raw!r}")
    fsq_levels = tuple(levels_raw)
    codebook_size = top.get("codebook_size", int, required=False)
    official_config = top.text("official_config", required=False, empty_is_none=True)
    default = top.get("default", bool, required=False, default=False)
    weights = top.text("weights", required=False, empty_is_none=True)

    hub_table = top.get("hub", dict, required=False)
    hub_repo = hub_file = hub_revision = sha256 = None
    if hub_table is not None:
        hub = _Fields(path, hub_table, "[hub]: ")
        unknown = sorted(set(hub_table) - _HUB_KEYS)
        if unknown:
            raise hub.fail(f"unknown key(s) {', '.join(unknown)}")
        hub_repo = hub.text("repo")
        hub_file = hub.text("file")
        hub_revision = hub.text("revision", required=False) or "main"
        sha256 = hub.text("sha256", required=False, empty_is_none=True)
        if sha256 is not None:
            sha256 = sha256.lower()
            if not _SHA256_RE.match(sha256):
                raise hub.fail(f"'sha256' must be 64 hexadecimal digits or empty, got {sha256!r}")
    if hub_repo is None and weights is None:
        raise top.fail("the card names no weights: give a [hub] table (repo, file) or a 'weights' file")
    top_sha = top.text("sha256", required=False, empty_is_none=True)
    if top_sha is not None:
        if hub_table is not None:
            raise top.fail("give 'sha256' in [hub] or at the top level (shipped weights), not both")
        sha256 = top_sha.lower()
        if not _SHA256_RE.match(sha256):
            raise top.fail(f"'sha256' must be 64 hexadecimal digits or empty, got {sha256!r}")
    training = dict(top.get("training", dict, required=False, default={}))

    metrics_table = top.get("metrics", dict, required=False, default={})
    metrics: dict[str, float | str] = {}
    for key, value in metrics_table.items():
        if isinstance(value, str):
            metrics[key] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            metrics[key] = float(value)
        else:
            raise top.fail(f"[metrics]: {key!r} must be a number or a string, got {value!r}")

    architecture = dict(top.get("architecture", dict))
    try:
        families.get(family)
    except ConfigError as exc:
        raise top.fail(str(exc)) from exc
    codebook_size = _check_against_config(
        family,
        top,
        architecture,
        version=version,
        causal=causal,
        temporal_factor=temporal_factor,
        spatial_factor=spatial_factor,
        regularizer=regularizer,
        latent_channels=latent_channels,
        fsq_levels=fsq_levels,
        codebook_size=codebook_size,
    )
    return ModelCard(
        name=name,
        family=family,  # type: ignore[arg-type]
        version=version,  # type: ignore[arg-type]
        official_name=official_name,
        description=description,  # type: ignore[arg-type]
        causal=causal,
        temporal_factor=temporal_factor,
        spatial_factor=spatial_factor,
        regularizer=regularizer,  # type: ignore[arg-type]
        latent_channels=latent_channels,
        fsq_levels=fsq_levels,
        codebook_size=codebook_size,
        hub_repo=hub_repo,
        hub_file=hub_file,
        hub_revision=hub_revision,
        sha256=sha256,
        metrics=metrics,
        official_config=official_config,
        path=path,
        architecture=architecture,
        default=default,
        weights=weights,
        training=training,
    )


def _check_against_config(
    family: str, top: _Fields, architecture: dict[str, Any], **declared: Any
) -> int | None:
    """The declared summary fields of a card must agree with its [architecture] table (the fields the
    family's config defines). Returns the codebook size (from the architecture when the card gives none).
    """
    try:
        cfg = families.get(family).config_from_dict(dict(architecture))
    except (ConfigError, TypeError, ValueError) as exc:
        raise top.fail(f"[architecture]: {exc}") from exc
    codebook_size = declared.pop("codebook_size")
    for key, got in declared.items():
        if not hasattr(cfg, key):
            continue
        want = getattr(cfg, key)
        if got != want:
            raise top.fail(f"{key} = {got!r} disagrees with the [architecture] table, which gives {want!r}")
    if codebook_size is None or not hasattr(cfg, "codebook_size"):
        return codebook_size if codebook_size is not None else getattr(cfg, "codebook_size", None)
    if codebook_size != cfg.codebook_size:
        raise top.fail(
            f"codebook_size = {codebook_size} disagrees with the [architecture] table, "
            f"which gives {cfg.codebook_size}"
        )
    return codebook_size


def card_from_toml(path: str | os.PathLike[str]) -> ModelCard:
    """Read and validate one card file (a user may pass their own); problems raise ConfigError."""
    p = Path(path).expanduser().resolve()
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"model card {p} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"model card {p} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"model card {p} is not valid TOML: {exc}") from exc
    return _parse_card(p, data)


# ---------------------------------------------------------------------------------------- the zoo
def cards_dir() -> Path:
    """The directory of the model cards.

    ``$VIDTOK_MODELS_DIR`` when set; else ``vidtok_cli/_models`` of an installed wheel; else the
    source tree's ``models/`` beside the package.
    """
    env = os.environ.get(ENV_MODELS_DIR)
    if env:
        return Path(env).expanduser().resolve()
    package_dir = Path(__file__).resolve().parent
    installed = package_dir / "_models"
    if installed.is_dir():
        return installed
    return package_dir.parent / "models"


def _sort_key(card: ModelCard) -> tuple[Any, ...]:
    official = card.official_name or ""
    order = _README_ORDER.index(official) if official in _README_ORDER else len(_README_ORDER)
    return (not card.default, card.family, card.version, order, card.name)


@functools.lru_cache(maxsize=8)
def _load_dir(directory: Path) -> tuple[ModelCard, ...]:
    if not directory.is_dir():
        hint = f" (set by ${ENV_MODELS_DIR})" if os.environ.get(ENV_MODELS_DIR) else ""
        raise ConfigError(f"model card directory {directory}{hint} does not exist")
    cards = []
    for path in sorted(directory.glob("*.toml")):
        card = card_from_toml(path)
        if card.name != path.stem:
            raise ConfigError(
                f"model card {path}: name {card.name!r} differs from the file name {path.stem!r}"
            )
        cards.append(card)
    seen: dict[str, ModelCard] = {}
    for card in cards:
        for key in {normalize_name(card.name)} | (
            {normalize_name(card.official_name)} if card.official_name else set()
        ):
            other = seen.get(key)
            if other is not None and other is not card:
                raise ConfigError(f"model cards {other.path} and {card.path} both answer to the name {key!r}")
            seen[key] = card
    defaults = [c for c in cards if c.default]
    if len(defaults) > 1:
        raise ConfigError(f"more than one default model card: {', '.join(str(c.path) for c in defaults)}")
    return tuple(sorted(cards, key=_sort_key))


def clear_cache() -> None:
    """Forget the cards read so far (after editing card files in a running process)."""
    _load_dir.cache_clear()
    _index.cache_clear()


def list_cards() -> list[ModelCard]:
    """All cards of :func:`cards_dir`: the default model first, then by family, version and README order."""
    return list(_load_dir(cards_dir()))


@functools.lru_cache(maxsize=8)
def _index(directory: Path) -> dict[str, ModelCard]:
    index: dict[str, ModelCard] = {}
    for card in _load_dir(directory):
        index[normalize_name(card.name)] = card
        if card.official_name:
            index[normalize_name(card.official_name)] = card
    return index


def find_card(name: str) -> ModelCard | None:
    """The card answering to ``name`` (card name or official name, any case, ``_``/``-``/``.``), or None."""
    return _index(cards_dir()).get(normalize_name(name))


def get_card(name: str) -> ModelCard:
    """Like :func:`find_card`, but an unknown name raises ModelNotFoundError with the closest names."""
    card = find_card(name)
    if card is not None:
        return card
    index = _index(cards_dir())
    close = difflib.get_close_matches(normalize_name(name), list(index), n=3, cutoff=0.6)
    suggestions: list[str] = []
    for key in close:
        card_name = index[key].name
        if card_name not in suggestions:
            suggestions.append(card_name)
    hint = f"did you mean {', '.join(suggestions)}? " if suggestions else ""
    raise ModelNotFoundError(f"unknown model {name!r}; {hint}run `vidtok models` to list the models")


def card_for_file(path: str | os.PathLike[str]) -> ModelCard | None:
    """The card whose name or official name is the stem of a local weights file, e.g.
    ``vidtok_kl_causal_488_4chn.ckpt`` or ``vidtok-kl-causal-488-4chn.safetensors``; None if no card fits."""
    stem = Path(path).name
    changed = True
    while changed:
        changed = False
        for suffix in _WEIGHT_SUFFIXES:
            if stem.lower().endswith(suffix) and len(stem) > len(suffix):
                stem = stem[: -len(suffix)]
                changed = True
    return find_card(stem)
