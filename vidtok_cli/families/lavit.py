"""Video-LaVIT motion tokens as a model family: ``lavit`` (key frame + motion tokens per 24-frame clip).

Input is not pixels: each clip is a motion clip (B, 2, 24, 20, 36) from ``motion_vectors`` (MPEG-4
motion vectors at 6 fps, normalised) plus the RGB key frame (frame 0 of the clip). Streams, one step per
clip:

- ``motion_tokens``: vq, (135,) int64 per clip (the official (t, h, w) = (3, 5, 9) grid, row-major);
  clip-level (``time_axis`` None, ``fixed_shape`` (135,)).
- ``key_frame``: the key frame encoded by a causal VidTok model's first-frame path (default: the
  embedded default model; `set_keyframe_model` for another); that model's own stream layout with one
  latent step per clip.

Decode: tokens -> the tokenizer's decoder -> motion in pixels per frame (`motion_warp.to_pixels`) ->
frames by warping the decoded key frame (`motion_warp.motion_compensate`). Groups for partial decoding:
``motion`` (the motion field) and ``key_frame``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..arch.config import ArchConfigError
from ..arch.lavit_config import LavitMotionConfig
from ..errors import ConfigError, UsageError
from ..tokenizer import Encoded, FrameLayout, LatentSpec, ModuleTokenizer
from . import Family, dict_reader

if TYPE_CHECKING:
    from torch import Tensor, nn

    from ..arch.lavit_motion import MotionTransformerTokenizer

NAME = "lavit"
MOTION = "motion_tokens"
KEY_FRAME = "key_frame"


def config_from_official(data: Mapping[str, Any], where: str = "config") -> LavitMotionConfig:
    """The config from the official constructor arguments as JSON (the format of the fixture's config.json:
    ``encoder``, ``decoder``, ``decoder_out_dim``, ``n_embed``, ``embed_dim``; other keys ignored)."""
    try:
        return LavitMotionConfig.from_official(data, where)
    except (ArchConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}" if not str(e).startswith(where) else str(e)) from e


def looks_official(data: Mapping[str, Any]) -> bool:
    """Constructor arguments of the motion tokenizer: encoder and decoder tables of transformer arguments
    and the quantiser's ``n_embed`` / ``embed_dim``."""
    enc = data.get("encoder", data.get("encoder_config"))
    return (
        isinstance(enc, Mapping)
        and "num_heads" in enc
        and "target" not in enc
        and any(k in data for k in ("n_embed", "embed_dim", "decoder_out_dim"))
    )


def _build(cfg: LavitMotionConfig) -> nn.Module:
    from ..arch.lavit_motion import build_model

    return build_model(cfg)


class LavitMotionTokenizer(ModuleTokenizer):
    """The motion tokenizer (and the key-frame model it uses) as a `Tokenizer` (see the module doc)."""

    family = NAME

    def __init__(
        self,
        module: nn.Module,
        card: Mapping[str, Any] | None = None,
        weights_path: Any = None,
        keyframe_model: ModuleTokenizer | None = None,
    ):
        super().__init__(module, card, weights_path)
        self._keyframe = keyframe_model

    # --- description
    @property
    def cfg(self) -> LavitMotionConfig:
        return self._module.cfg

    @property
    def input_kind(self) -> str:
        """What ``encode`` takes: motion clips from ``motion_vectors``, not frames."""
        return "motion"

    @property
    def frame_layout(self) -> FrameLayout:
        t, _, _ = self.cfg.input_shape
        return FrameLayout(temporal_factor=t, spatial_factor=16, causal=False, clip_frames=t, in_channels=2)

    @property
    def motion_spec(self) -> LatentSpec:
        return LatentSpec(
            MOTION, "vq", codebook_size=self.cfg.n_embed, time_axis=None, fixed_shape=(self.cfg.num_tokens,)
        )

    @property
    def latent_specs(self) -> dict[str, LatentSpec]:
        (inner,) = self.keyframe_model.latent_specs.values()
        key = LatentSpec(
            KEY_FRAME,
            inner.kind,
            inner.channels,
            inner.levels,
            inner.codebook_size,
            inner.time_axis,
            inner.spatial_factor,
            inner.fixed_shape,
        )
        return {MOTION: self.motion_spec, KEY_FRAME: key}

    @property
    def stream_groups(self) -> dict[str, tuple[str, ...]]:
        return {"motion": (MOTION,), "key_frame": (KEY_FRAME,)}

    def to(self, *args: Any, **kwargs: Any) -> LavitMotionTokenizer:
        """Moves the motion tokenizer and, once loaded, the key-frame model."""
        super().to(*args, **kwargs)
        if self._keyframe is not None:
            self._keyframe.to(*args, **kwargs)
        return self

    # --- the key-frame model
    @property
    def keyframe_model(self) -> ModuleTokenizer:
        """The causal model that encodes key frames (loaded on first use: the embedded default model)."""
        if self._keyframe is None:
            from ..loading import load_model

            self.set_keyframe_model(load_model(None, device=self.device))
        assert self._keyframe is not None
        return self._keyframe

    def set_keyframe_model(self, model: ModuleTokenizer) -> None:
        """Uses ``model`` (a causal single-stream model, e.g. VidTok) for key frames."""
        layout = model.frame_layout
        if not layout.causal or layout.in_channels != 3 or len(model.latent_specs) != 1:
            raise ConfigError(
                f"key frames need a causal single-stream RGB model; {getattr(model, 'name', model)} is not one"
            )
        self._keyframe = model

    def encode_key_frames(self, frames: Tensor) -> Tensor:
        """Key frames (B, 3, H, W) in [-1, 1] -> the ``key_frame`` stream (B, ...), one latent step each."""
        from ..frames import pad_to_multiple

        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"key frames must be (B, 3, H, W), got {tuple(frames.shape)}")
        model = self.keyframe_model
        x, _ = pad_to_multiple(frames.unsqueeze(2), model.frame_layout.spatial_factor)
        (latent,) = model.encode(x.to(model.device, model.dtype)).latents.values()
        return latent

    def decode_key_frames(self, latent: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """The ``key_frame`` stream -> key frames (B, 3, H, W) in [-1, 1], cropped to ``size`` (H, W)."""
        model = self.keyframe_model
        (name,) = model.latent_specs
        frames = model.decode({name: latent})[:, :, 0]
        if size is not None:
            frames = frames[..., : size[0], : size[1]]
        return frames.clamp(-1.0, 1.0)

    # --- motion
    def encode(self, x: Tensor, key_frames: Tensor | None = None) -> Encoded:
        """Motion clips x (B, 2, 24, 20, 36) -> ``motion_tokens`` (B, 135); with ``key_frames`` (B, 3, H, W)
        in [-1, 1] also the ``key_frame`` stream. ``decoder_input``: the codebook rows (B, 3, 5, 9, C);
        ``moments``: the quantiser's input before l2-normalisation."""
        m: MotionTransformerTokenizer = self._module
        try:
            z = m.quantizer_input(x.to(self.device, self.dtype))
        except ValueError as e:
            raise UsageError(str(e)) from e
        rows, ids = m.quantize.tokenize(z)
        latents = {MOTION: ids.view(x.shape[0], -1)}
        if key_frames is not None:
            latents[KEY_FRAME] = self.encode_key_frames(key_frames)
        return Encoded(latents, moments=z, decoder_input=rows.view(z.shape).to(z.dtype))

    def motion_field(self, tokens: Tensor) -> Tensor:
        """Motion tokens (B, 135) -> the decoder's motion (B, 2, 24, 20, 36) in tokenizer units."""
        try:
            return self._module.decode_tokens(tokens.to(self.device).long())
        except (ValueError, IndexError) as e:
            raise UsageError(f"motion tokens: {e}") from e

    def motion_pixels(self, tokens: Tensor, height: int, width: int) -> Tensor:
        """Motion tokens (B, 135) -> motion in pixels per frame (B, 2, 24, height, width)."""
        from ..motion_warp import to_pixels

        return to_pixels(self.motion_field(tokens), height, width)

    def motion_view(
        self, latents: Mapping[str, Tensor], size: tuple[int, int], max_magnitude: float | None = None
    ) -> Tensor:
        """The decoded motion as colour frames (B, 3, 24, H, W) in [-1, 1] (``--view motion``); pass the
        same ``max_magnitude`` (pixels per frame) for every clip of a video to keep one colour scale."""
        from ..motion_warp import motion_to_rgb

        return motion_to_rgb(self.decode(latents, only="motion", size=size), max_magnitude)

    def decode(
        self, latents: Mapping[str, Tensor], only: str | None = None, size: tuple[int, int] | None = None
    ) -> Tensor:
        """Frames (B, 3, 24, H, W) in [-1, 1]: the key frame warped by the decoded motion.

        ``only="motion"``: the motion field (B, 2, 24, h, w): tokenizer units on the 20x36 grid, or pixels
        per frame at ``size`` (H, W) when given. ``only="key_frame"``: the key frames (B, 3, 1, H, W).
        ``size`` crops the key frames (the key-frame model pads to its spatial factor).
        """
        from ..motion_warp import motion_compensate

        if only not in (None, *self.stream_groups):
            raise UsageError(f"--only {only}: a {NAME} model has the parts {', '.join(self.stream_groups)}")
        groups = [only] if only else list(self.stream_groups)
        missing = [n for g in groups for n in self.stream_groups[g] if n not in latents]
        if missing:
            raise UsageError(f"no {', '.join(missing)} stream among {sorted(latents)}")
        if only == "motion":
            tokens = latents[MOTION]
            return self.motion_field(tokens) if size is None else self.motion_pixels(tokens, *size)
        key = self.decode_key_frames(latents[KEY_FRAME], size)
        if only == "key_frame":
            return key.unsqueeze(2)
        flow = self.motion_pixels(latents[MOTION], key.shape[-2], key.shape[-1])
        return motion_compensate(key.float(), flow).clamp(-1.0, 1.0)

    # --- not a causal stream
    def encode_chunk(self, x: Tensor, state: Any = None) -> tuple[Encoded, Any]:
        raise UsageError(
            f"a {NAME} model encodes whole {self.frame_layout.clip_frames}-frame clips, not chunks"
        )

    def decode_chunk(
        self, latents: Mapping[str, Tensor], state: Any = None, final: bool = False
    ) -> tuple[Tensor, Any]:
        raise UsageError(
            f"a {NAME} model decodes whole {self.frame_layout.clip_frames}-frame clips, not chunks"
        )

    def blend_encoded(self, moments: Tensor) -> Encoded:
        """Tokens of quantiser inputs (B, 3, 5, 9, C) (no tiling for motion: the grid is fixed)."""
        rows, ids = self._module.quantize.tokenize(moments)
        return Encoded({MOTION: ids.view(moments.shape[0], -1)}, moments, rows.view(moments.shape))


FAMILY = Family(
    name=NAME,
    config_class=LavitMotionConfig,
    config_from_dict=dict_reader(LavitMotionConfig),
    config_to_dict=LavitMotionConfig.to_dict,
    config_from_official=config_from_official,
    build=_build,
    wrap=LavitMotionTokenizer,
    key_prefixes=("encoder.", "decoder.", "encode_task_layer.", "decode_task_layer.", "quantize."),
    looks_official=looks_official,
)
