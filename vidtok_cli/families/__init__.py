"""The family registry: family name -> config class, builder, adapter, weight-key prefixes, config readers.

``load_model`` and the zoo dispatch through it, so adding a model family is one file in ``arch/``, one
adapter module here (a ``FAMILY`` entry), its cards in ``models/`` and its tests; nothing in ``stream``,
``codec``, ``vtok``, ``bench`` or ``train`` changes. Importing this module loads no torch: the adapters are
imported when a family is first used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from ..tokenizer import ModuleTokenizer


@dataclass(frozen=True)
class Family:
    """What vidtok needs to know about one model family (see the module doc).

    ``config_from_dict``: a card's ``[architecture]`` table (or a converted file's embedded config) -> config.
    ``config_from_official``: the official config file's structure -> config, or None when the family has none.
    ``build``: config -> randomly initialised ``nn.Module`` whose state-dict keys are the official ones.
    ``wrap``: (module, card dict, weights path) -> the family's ``Tokenizer``.
    ``key_prefixes``: the state-dict prefixes the module owns; ``training_prefixes`` are keys of official
    checkpoints that inference does not need (losses, EMA copies) and are dropped on purpose.
    ``finish_meta``: rebuilds what a module built on the meta device lacks (non-persistent buffers).
    ``weightless``: the family needs no weights file (``--model trivial``).
    """

    name: str
    config_class: type
    config_from_dict: Callable[[Mapping[str, Any]], Any]
    config_to_dict: Callable[[Any], dict[str, Any]]
    config_from_official: Callable[[Mapping[str, Any], str], Any] | None
    build: Callable[[Any], nn.Module]
    wrap: Callable[..., ModuleTokenizer]
    key_prefixes: tuple[str, ...]
    training_prefixes: tuple[str, ...] = ()
    looks_official: Callable[[Mapping[str, Any]], bool] | None = None
    finish_meta: Callable[[Any, Any], None] | None = None
    weightless: bool = False

    def default_config(self) -> Any:
        """The config of a weightless family (the trivial codec), built without arguments."""
        return self.config_class()


def dict_reader(config_class: Any) -> Callable[[Mapping[str, Any]], Any]:
    """A family's ``config_from_dict``: ``config_class.from_dict`` with its errors as one-line ConfigErrors."""
    from ..arch.config import ArchConfigError

    def read(d: Mapping[str, Any]) -> Any:
        try:
            return config_class.from_dict(dict(d))
        except (ArchConfigError, TypeError, ValueError) as e:
            raise ConfigError(str(e)) from e

    return read


# family name -> module defining FAMILY; imported on first use
_MODULES = {
    "vidtok": "vidtok_cli.families.vidtok",
    "trivial": "vidtok_cli.families.trivial",
    "vidtwin": "vidtok_cli.families.vidtwin",
    "lavit": "vidtok_cli.families.lavit",
}
_LOADED: dict[str, Family] = {}


def names() -> tuple[str, ...]:
    """The registered family names."""
    return tuple(_MODULES)


def get(name: str) -> Family:
    """The registry entry of a family; ConfigError naming the known ones when there is none."""
    if name not in _LOADED:
        if name not in _MODULES:
            raise ConfigError(f"unknown model family {name!r} (known: {', '.join(_MODULES)})")
        _LOADED[name] = import_module(_MODULES[name]).FAMILY
    return _LOADED[name]


def for_config(config: Any) -> Family:
    """The family whose config class ``config`` is an instance of."""
    for name in _MODULES:
        fam = get(name)
        if isinstance(config, fam.config_class):
            return fam
    raise ConfigError(f"{type(config).__name__} is not the config of a registered model family")


def official_family(data: Mapping[str, Any]) -> Family | None:
    """The first family that recognises ``data`` as its official config structure, or None."""
    for name in _MODULES:
        fam = get(name)
        if fam.config_from_official is not None and fam.looks_official and fam.looks_official(data):
            return fam
    return None


def official_config(data: Mapping[str, Any], where: str) -> tuple[Family, Any]:
    """(family, config) for an official config file's structure; the first family that recognises it."""
    fam = official_family(data)
    if fam is None:
        raise ConfigError(f"{where}: not an official config of a supported model family")
    assert fam.config_from_official is not None
    return fam, fam.config_from_official(data, where)
