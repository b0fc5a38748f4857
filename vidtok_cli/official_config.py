"""Reading official config files (YAML or JSON) without OmegaConf: ``${a.b.c}`` interpolations resolved."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError, VidtokError

_INTERP = re.compile(r"^\$\{([^}]+)\}$")


def resolve_interpolations(node: Any, root: Mapping[str, Any], where: str, depth: int = 0) -> Any:
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
        return resolve_interpolations(target, root, where, depth + 1)
    if isinstance(node, Mapping):
        return {k: resolve_interpolations(v, root, where, depth) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_interpolations(v, root, where, depth) for v in node]
    return node


def read_config_file(path: Path) -> Mapping[str, Any]:
    """The mapping in a ``.yaml``/``.yml``/``.json`` file; ConfigError with one line when it cannot be read."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(path.read_text())
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
    return data
