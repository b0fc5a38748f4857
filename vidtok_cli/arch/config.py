"""Frozen architecture config of a VidTok model, and its translation from the official YAML params."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

VERSIONS = ("v1.0", "v1.1")
NORM_TYPES = ("layernorm", "groupnorm")
REGULARIZERS = ("kl", "fsq")
INTERPOLATION_MODES = ("nearest", "trilinear")


class ArchConfigError(ValueError):
    """A config that does not describe a buildable VidTok model."""


class FlatConfig:
    """``to_dict`` / ``from_dict`` of a flat architecture dataclass (a card's ``[architecture]`` table)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-serialisable dict (tuples as lists, None entries dropped)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if v is None:
                continue
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: Any) -> Any:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        if unknown:
            raise ArchConfigError(f"unknown architecture keys: {', '.join(unknown)}")
        return cls(**dict(d))


def _tuple_or_none(v: Any) -> tuple[int, ...] | None:
    if v is None:
        return None
    return tuple(int(i) for i in v)


@dataclass(frozen=True)
class VidTokConfig(FlatConfig):
    """Everything needed to build a VidTok encoder/decoder/regularizer (official semantics).

    ``spatial_ds``/``tempo_ds``/``spatial_us``/``tempo_us`` of ``None`` mean the official defaults
    (causal: spatial down at levels 0..L-2, temporal down at [L-2, L-3], spatial up at 1..L-1,
    temporal up at [1, 2]). Non-causal models always use those defaults, as the official code does.
    """

    causal: bool = True
    version: str = "v1.0"
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    in_channels: int = 3
    out_ch: int = 3
    z_channels: int = 4
    time_downsample_factor: int = 4
    spatial_ds: tuple[int, ...] | None = None
    tempo_ds: tuple[int, ...] | None = None
    spatial_us: tuple[int, ...] | None = None
    tempo_us: tuple[int, ...] | None = None
    norm_type: str = "layernorm"
    norm_groups: int | None = None
    init_pad_mode: str = "replicate"
    interpolation_mode: str = "nearest"
    dropout: float = 0.0
    regularizer: str = "kl"
    fsq_levels: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("ch_mult", "fsq_levels"):
            object.__setattr__(self, name, tuple(int(i) for i in getattr(self, name)))
        for name in ("spatial_ds", "tempo_ds", "spatial_us", "tempo_us"):
            object.__setattr__(self, name, _tuple_or_none(getattr(self, name)))
        self.validate()

    # ----------------------------------------------------------------- derived
    @property
    def num_levels(self) -> int:
        return len(self.ch_mult)

    @property
    def double_z(self) -> bool:
        return self.regularizer == "kl"

    @property
    def enc_spatial_ds(self) -> tuple[int, ...]:
        if self.spatial_ds is None or not self.causal:
            return tuple(range(self.num_levels - 1))
        return self.spatial_ds

    @property
    def enc_tempo_ds(self) -> tuple[int, ...]:
        if self.tempo_ds is None or not self.causal:
            return (self.num_levels - 2, self.num_levels - 3)
        return self.tempo_ds

    @property
    def dec_spatial_us(self) -> tuple[int, ...]:
        if self.spatial_us is None or not self.causal:
            return tuple(range(1, self.num_levels))
        return self.spatial_us

    @property
    def dec_tempo_us(self) -> tuple[int, ...]:
        if self.tempo_us is None or not self.causal:
            return (1, 2)
        return self.tempo_us

    @property
    def spatial_factor(self) -> int:
        return 2 ** len(self.enc_spatial_ds)

    @property
    def temporal_factor(self) -> int:
        return 2 ** len([i for i in self.enc_tempo_ds if i in self.enc_spatial_ds])

    @property
    def latent_channels(self) -> int:
        return self.z_channels

    @property
    def codebook_size(self) -> int | None:
        if self.regularizer != "fsq":
            return None
        n = 1
        for level in self.fsq_levels:
            n *= level
        return n

    # -------------------------------------------------------------- validation
    def validate(self) -> None:
        def bad(msg: str) -> None:
            raise ArchConfigError(msg)

        if self.version not in VERSIONS:
            bad(f"version must be one of {VERSIONS}, got {self.version!r}")
        if self.version == "v1.1" and not self.causal:
            bad("v1.1 exists only for causal models")
        if self.norm_type not in NORM_TYPES:
            bad(f"norm_type must be one of {NORM_TYPES}, got {self.norm_type!r}")
        if self.regularizer not in REGULARIZERS:
            bad(f"regularizer must be one of {REGULARIZERS}, got {self.regularizer!r}")
        if self.interpolation_mode not in INTERPOLATION_MODES:
            bad(f"interpolation_mode must be one of {INTERPOLATION_MODES}, got {self.interpolation_mode!r}")
        if self.interpolation_mode == "trilinear" and self.version != "v1.1":
            bad("interpolation_mode 'trilinear' exists only in v1.1 models")
        if self.init_pad_mode not in ("replicate", "constant"):
            bad(f"init_pad_mode must be 'replicate' or 'constant', got {self.init_pad_mode!r}")
        if self.ch <= 0 or not self.ch_mult or any(m <= 0 for m in self.ch_mult):
            bad("ch and every ch_mult entry must be positive")
        if self.num_levels < 2:
            bad("ch_mult needs at least 2 levels")
        if self.num_res_blocks < 1:
            bad("num_res_blocks must be >= 1")
        if self.z_channels <= 0:
            bad("z_channels must be positive")
        if self.norm_groups is not None and (self.norm_type != "groupnorm" or self.norm_groups < 1):
            bad("norm_groups (a positive number of groups) needs norm_type 'groupnorm'")
        if self.norm_type == "groupnorm":
            groups = self.norm_groups or 32
            widths = {self.ch * m for m in self.ch_mult} | {self.ch}
            if any(w % groups for w in widths):
                bad(
                    f"groupnorm uses {groups} groups; every width must be a multiple of it, got {sorted(widths)}"
                )
        levels = range(self.num_levels)
        for name in ("enc_spatial_ds", "enc_tempo_ds", "dec_spatial_us", "dec_tempo_us"):
            if any(i not in levels for i in getattr(self, name)):
                bad(f"{name.split('_', 1)[1]} lists a level outside 0..{self.num_levels - 1}")
        effective_tds = [i for i in self.enc_tempo_ds if i in self.enc_spatial_ds]
        effective_tus = [i for i in self.dec_tempo_us if i in self.dec_spatial_us]
        if 2 ** len(effective_tds) != self.time_downsample_factor:
            bad(
                f"time_downsample_factor {self.time_downsample_factor} does not match the "
                f"{len(effective_tds)} temporal downsampling level(s)"
            )
        if len(effective_tus) != len(effective_tds) or len(self.dec_spatial_us) != len(self.enc_spatial_ds):
            bad("the decoder's up-sampling levels do not mirror the encoder's down-sampling levels")
        if self.regularizer == "fsq":
            if not self.fsq_levels or any(level < 2 for level in self.fsq_levels):
                bad("an FSQ model needs fsq_levels, each >= 2")
            if len(self.fsq_levels) != self.z_channels:
                bad(
                    f"FSQ with projections is not supported: z_channels ({self.z_channels}) must equal "
                    f"the number of FSQ levels ({len(self.fsq_levels)})"
                )
        elif self.fsq_levels:
            bad("fsq_levels given for a KL model")

    # ----------------------------------------------------------- conversions
    @property
    def norm_layer(self) -> str:
        """The norm layer the blocks build: ``layernorm``, ``groupnorm`` (32 groups) or ``groupnorm:G``.

        ``norm_groups`` is not an official option: it lets small models (``ch`` < 32) use GroupNorm,
        whose per-frame statistics keep each pixel's intensity, unlike LayerNorm over few channels.
        Causal temporal blocks normalise one position at a time, so keep several channels per group
        (1 group is what the default model uses); 2-channel groups map every pair to +-1.
        """
        if self.norm_type == "groupnorm" and self.norm_groups is not None:
            return f"groupnorm:{self.norm_groups}"
        return self.norm_type

    @classmethod
    def from_official(
        cls,
        encoder_target: str,
        encoder_params: dict[str, Any],
        regularizer_target: str,
        regularizer_params: dict[str, Any] | None = None,
    ) -> VidTokConfig:
        """Build from the official YAML's encoder_config and regularizer_config (decoder params are equal)."""
        regularizer_params = dict(regularizer_params or {})
        p = dict(encoder_params)
        if encoder_target.endswith("model_3dcausal_v1_1.EncoderCausal3DPadding"):
            causal, version = True, "v1.1"
        elif encoder_target.endswith("model_3dcausal.EncoderCausal3DPadding"):
            causal, version = True, "v1.0"
        elif encoder_target.endswith("model_3dnoncausal.Encoder3D"):
            causal, version = False, "v1.0"
        else:
            raise ArchConfigError(f"unsupported encoder target {encoder_target!r}")
        if regularizer_target.endswith("DiagonalGaussianRegularizer"):
            regularizer, levels = "kl", ()
            if not p.get("double_z", True):
                raise ArchConfigError("a KL regularizer needs double_z: true")
        elif regularizer_target.endswith("FSQRegularizer"):
            regularizer = "fsq"
            levels = tuple(regularizer_params.get("levels", ()))
            if regularizer_params.get("num_codebooks", 1) != 1:
                raise ArchConfigError("FSQ with several codebooks is not supported")
            if p.get("double_z", True):
                raise ArchConfigError("an FSQ regularizer needs double_z: false")
        else:
            raise ArchConfigError(f"unsupported regularizer target {regularizer_target!r}")
        if p.get("resamp_with_conv", True) is not True:
            raise ArchConfigError("resamp_with_conv: false is not supported")
        if p.get("give_pre_end") or p.get("tanh_out"):
            raise ArchConfigError("give_pre_end / tanh_out are not supported")
        kwargs: dict[str, Any] = dict(
            causal=causal,
            version=version,
            ch=int(p["ch"]),
            ch_mult=tuple(p.get("ch_mult", (1, 2, 4, 8))),
            num_res_blocks=int(p["num_res_blocks"]),
            in_channels=int(p["in_channels"]),
            out_ch=int(p["out_ch"]),
            z_channels=int(p["z_channels"]),
            time_downsample_factor=int(p.get("time_downsample_factor", 4)),
            norm_type=p.get("norm_type", "groupnorm"),
            dropout=float(p.get("dropout", 0.0)),
            regularizer=regularizer,
            fsq_levels=levels,
        )
        if causal:
            kwargs.update(
                spatial_ds=p.get("spatial_ds"),
                tempo_ds=p.get("tempo_ds"),
                spatial_us=p.get("spatial_us"),
                tempo_us=p.get("tempo_us"),
                init_pad_mode=p.get("init_pad_mode", "replicate"),
            )
        if version == "v1.1":
            kwargs["interpolation_mode"] = p.get("interpolation_mode", "nearest")
        return cls(**kwargs)
