"""Building blocks of the VidTok encoder/decoder.

Every module keeps the official parameter names (so official state dicts load strictly) and works
on video tensors (B, C, T, H, W) throughout: per-frame 2-D convolutions run as 3-D convolutions with a
temporal kernel of 1, and per-pixel 1-D temporal convolutions as 3-D convolutions with a spatial kernel
of 1, which avoids reshaping activations between the spatial and temporal halves of each block.

Causal temporal operators are streaming operators: they read and update a :class:`StreamState`
that holds, per operator, the input frames that later output frames still need. Processing a whole
clip is the special case of one chunk with a fresh state and ``final=True``, so chunked and whole-clip
results agree up to float rounding by construction.

Layout: activations run in the channels-last 3-D memory format (``torch.channels_last_3d``: channels
innermost), in which oneDNN's convolutions are fastest on CPU, per-position norms read contiguous rows
and concatenating frames is a plain copy of contiguous slabs. The model converts its input once
(:func:`channels_last`); every layer keeps the format. Without autograd (inference), activations and
residual sums are updated in place so that no large temporary is allocated twice.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

# ----------------------------------------------------------------------------- layout


def channels_last(x: Tensor) -> Tensor:
    """``x`` (B, C, T, H, W) in the channels-last 3-D memory format (no copy when it already is)."""
    return x.contiguous(memory_format=torch.channels_last_3d)


def is_channels_last(x: Tensor) -> bool:
    """Whether ``x`` is laid out channels-last (and not also plainly contiguous, as 1-channel tensors are)."""
    return x.is_contiguous(memory_format=torch.channels_last_3d) and not (
        x.is_contiguous() and x.shape[1] > 1
    )


def like(x: Tensor, ref: Tensor) -> Tensor:
    """``x`` in the memory format of ``ref`` (channels-last or contiguous)."""
    return channels_last(x) if is_channels_last(ref) else x.contiguous()


def empty_like_layout(ref: Tensor, shape: tuple[int, ...]) -> Tensor:
    """An uninitialised video tensor of ``shape`` with ``ref``'s dtype, device and memory format."""
    fmt = torch.channels_last_3d if is_channels_last(ref) else torch.contiguous_format
    return torch.empty(shape, dtype=ref.dtype, device=ref.device, memory_format=fmt)


def positions(x: Tensor) -> Tensor:
    """The (B, T, H, W, C) view of a video tensor (contiguous for a channels-last one)."""
    return x.permute(0, 2, 3, 4, 1)


def video(v: Tensor) -> Tensor:
    """Inverse of :func:`positions`: the (B, C, T, H, W) view of a (B, T, H, W, C) tensor."""
    return v.permute(0, 4, 1, 2, 3)


def inplace_ok() -> bool:
    """Whether activations may be overwritten in place and the inference-only paths taken: no autograd
    graph is recorded and nothing is being traced by ``torch.compile`` (their out= and cached-weight
    operations would break the graph)."""
    return not torch.is_grad_enabled() and not torch.compiler.is_compiling()


def add_residual(h: Tensor, x: Tensor) -> Tensor:
    """``x + h``, accumulated into ``h`` (a fresh activation) when no graph is recorded."""
    return h.add_(x) if inplace_ok() and h.shape == x.shape and h.dtype == x.dtype else x + h


# ----------------------------------------------------------------------------- streaming state


@dataclass
class StreamState:
    """Causal caches of one video stream (one per encoder or decoder pass).

    ``caches`` maps an operator's key to what it kept from earlier chunks; ``final`` marks the
    last chunk (operators with a look-ahead flush then); ``counters`` holds small integers such as
    frames already dropped from the decoder output.
    """

    caches: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    final: bool = False

    @property
    def started(self) -> bool:
        return bool(self.caches) or bool(self.counters)

    def __copy__(self) -> StreamState:
        """An independent snapshot: operators replace cache entries and never modify them in place."""
        return StreamState(dict(self.caches), dict(self.counters), self.final)


class Streaming(nn.Module):
    """Mixin: a module with a per-stream cache, identified by ``cache_key`` (set by the model)."""

    cache_key: str = ""


def assign_cache_keys(root: nn.Module) -> None:
    """Gives every streaming submodule of ``root`` a unique cache key (its qualified name)."""
    for name, module in root.named_modules():
        if isinstance(module, Streaming):
            module.cache_key = name or "<root>"


def take_windows(
    x: Tensor,
    state: StreamState,
    key: str,
    front_pad: int,
    receptive: int,
    stride: int,
    replicate: bool,
    act: bool = False,
) -> Tensor | None:
    """Returns the frames that cover every complete causal window available so far, or None.

    The first call pads ``front_pad`` frames in front (copies of the first frame or zeros); the frames
    that later windows still need stay in ``state`` under ``key``. ``act`` applies SiLU to ``x`` first
    (``x`` must then be a fresh activation); the activated frames are written straight behind the kept
    ones in one new buffer, so neither the activation nor the concatenation allocates a temporary.
    """
    cache = state.caches.get(key)
    if cache is None and x.shape[2] == 0:
        return None
    if act and not inplace_ok():
        x, act = F.silu(x), False
    kept = cache.shape[2] if cache is not None else front_pad
    if kept == 0 or x.shape[2] == 0:
        buf = cache if x.shape[2] == 0 else (F.silu(x, inplace=True) if act else x)
    else:
        b, c, t, h, w = x.shape
        buf = empty_like_layout(x, (b, c, kept + t, h, w))
        body = buf[:, :, kept:]
        if act:
            torch.ops.aten.silu.out(x, out=body)
        else:
            body.copy_(x)
        front = buf[:, :, :kept]
        if cache is not None:
            front.copy_(cache)
        elif replicate:
            front.copy_(body[:, :, :1].expand(-1, -1, kept, -1, -1))
        else:
            front.zero_()
    length = buf.shape[2]
    n = (length - receptive) // stride + 1 if length >= receptive else 0
    state.caches[key] = buf[:, :, n * stride :].clone()
    if n == 0:
        return None
    return buf[:, :, : (n - 1) * stride + receptive]


def empty_frames(x: Tensor, channels: int) -> Tensor:
    """A (B, channels, 0, H, W) tensor like ``x``."""
    return x.new_empty(x.shape[0], channels, 0, *x.shape[3:])


# ----------------------------------------------------------------------------- norms


class LayerNorm(nn.Module):
    """Official "layernorm": nn.LayerNorm over channels at every position (keys ``norm.weight|bias``)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(num_channels, eps=eps, elementwise_affine=True)

    def forward(self, x: Tensor) -> Tensor:
        x = x.movedim(1, -1)
        x = F.layer_norm(x, self.norm.normalized_shape, self.norm.weight, self.norm.bias, self.norm.eps)
        return x.movedim(-1, 1)


def make_norm(norm_type: str, channels: int) -> nn.Module:
    """``layernorm``, ``groupnorm`` (32 groups, official) or ``groupnorm:G`` (G groups; see
    ``VidTokConfig.norm_layer``)."""
    if norm_type == "layernorm":
        return LayerNorm(channels)
    groups = int(norm_type.partition(":")[2] or 32)
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


def apply_norm(norm: nn.Module, x: Tensor, scope: str) -> Tensor:
    """Applies ``norm`` to a video tensor with the statistics scope of the official module.

    LayerNorm normalises each position over channels, so the scope does not matter. GroupNorm
    statistics are taken per ``frame`` (over H, W), per ``clip`` (over T, H, W), per ``pixel`` (over T)
    or per ``pixel_frame`` (one position), exactly as the official code reshapes before normalising.
    """
    if isinstance(norm, LayerNorm):
        return norm(x)
    b, c, t, h, w = x.shape
    if scope == "pixel_frame" and norm.num_groups == 1:  # a LayerNorm over channels at each position
        y = F.layer_norm(positions(x), (c,), norm.weight, norm.bias, norm.eps)
        return video(y)
    if scope == "clip":
        return norm(x)
    if scope == "frame":
        y = norm(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, c, h, w).transpose(1, 2)
    if scope == "pixel":
        y = norm(x.permute(0, 3, 4, 1, 2).reshape(b * h * w, c, t))
        return y.reshape(b, h, w, c, t).permute(0, 3, 4, 1, 2)
    if scope == "pixel_frame":
        y = norm(x.permute(0, 2, 3, 4, 1).reshape(-1, c))
        return y.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)
    raise ValueError(f"unknown norm scope {scope!r}")


# ----------------------------------------------------------------------------- convolution kernel


# module -> (key of the weight it was packed from, the oneDNN weight); outside the modules so that
# state dicts, deepcopy and pickling never see the opaque oneDNN tensors
_PACKED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], Tensor]] = weakref.WeakKeyDictionary()


# module -> (key of the parameters they were derived from, derived weight, derived bias): the combined
# kernels of the upsampling layers' phase convolutions, made once per parameter version in inference
_DERIVED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], Tensor, Tensor | None]] = (
    weakref.WeakKeyDictionary()
)


def derived_weights(
    owner: nn.Module, params: tuple[Tensor | None, ...], make: Any
) -> tuple[Tensor, Tensor | None]:
    """``make(*params)`` (a weight and a bias), remembered per ``owner`` while ``params`` are unchanged
    (inference only)."""
    if torch.is_grad_enabled():
        return make(*params)
    key = tuple((t.data_ptr(), None if t.is_inference() else t._version) for t in params if t is not None)
    cached = _DERIVED.get(owner)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, *make(*params))
        _DERIVED[owner] = cached
    return cached[1], cached[2]


def _prepacked_ok(x: Tensor, weight: Tensor) -> bool:
    """Whether ``x`` may run through oneDNN with a prepacked weight: CPU float32 inference, eager."""
    return (
        not torch.compiler.is_compiling()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.numel() > 0
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and _get_current_dispatch_mode() is None  # e.g. FlopCounterMode sees the plain convolution
    )


def conv3d(
    owner: nn.Module,
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int, int] = (1, 1, 1),
    padding: tuple[int, int, int] = (0, 0, 0),
    residual: Tensor | None = None,
) -> Tensor:
    """``F.conv3d(x, weight, bias, stride, padding)`` (``+ residual`` when given); ``weight`` is a 5-D view
    of ``owner``'s parameter.

    CPU float32 inference calls oneDNN directly with the weight reordered once into its blocked layout
    (kept per ``owner`` outside the module, redone when the parameter changes): torch otherwise
    reorders the weight on every call and sends small inputs to a slow non-oneDNN kernel. Anything
    else (autograd, autocast, other devices, compilation, dispatch modes) takes ``F.conv3d``. The
    residual is added by oneDNN as the convolution writes its output when it has the output's layout.
    """
    if _prepacked_ok(x, weight):
        # inference tensors (weights made under torch.inference_mode) have no version counter
        version = None if weight.is_inference() else weight._version
        key = (weight.data_ptr(), version, tuple(weight.shape), stride, padding)
        cached = _PACKED.get(owner)
        if cached is None or cached[0] != key:
            packed = torch._C._nn.mkldnn_reorder_conv3d_weight(
                weight.contiguous().to_mkldnn(), list(padding), list(stride), [1, 1, 1], 1, list(x.shape)
            )
            cached = (key, packed)
            _PACKED[owner] = cached
        args = (cached[1], bias, list(padding), list(stride), [1, 1, 1], 1)
        if (
            residual is not None
            and residual.dtype == x.dtype
            and is_channels_last(residual) == is_channels_last(x)
        ):
            out_shape = [x.shape[0], weight.shape[0]] + [
                (x.shape[2 + i] + 2 * padding[i] - weight.shape[2 + i]) // stride[i] + 1 for i in range(3)
            ]
            if list(residual.shape) == out_shape:
                return torch.ops.mkldnn._convolution_pointwise.binary(
                    x, residual, *args, "add", None, None, [], None
                )
        y = torch.ops.mkldnn._convolution_pointwise(x, *args, "none", [], "")
    else:
        y = F.conv3d(x, weight, bias, stride=stride, padding=padding)
    return y if residual is None else add_residual(y, residual)


# ----------------------------------------------------------------------------- convolutions


class FrameConv2d(nn.Conv2d):
    """An nn.Conv2d (official keys and shapes) applied to every frame of a video tensor."""

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """The convolution of every frame of ``x`` (``+ residual`` when given)."""
        pad = self.padding if isinstance(self.padding, tuple) else (self.padding, self.padding)
        return conv3d(self, x, self.weight.unsqueeze(2), self.bias, (1, *self.stride), (0, *pad), residual)


class CausalConv3d(Streaming):
    """Official CausalConv3d: causal in time (front padding), symmetric zero padding in space.

    ``replicate`` selects the v1.1 front padding (copies of the first frame) over v1.0's zeros.
    """

    def __init__(
        self, chan_in: int, chan_out: int, kernel_size: int, stride_t: int = 1, replicate: bool = False
    ):
        super().__init__()
        self.kernel_t = kernel_size
        self.stride_t = stride_t
        self.time_pad = kernel_size - stride_t
        self.space_pad = (kernel_size - 1) // 2
        self.replicate = replicate
        self.conv = nn.Conv3d(chan_in, chan_out, kernel_size, stride=(stride_t, 1, 1))

    def forward(
        self, x: Tensor, state: StreamState, act: bool = False, residual: Tensor | None = None
    ) -> Tensor:
        """The convolution of ``x`` (of ``silu(x)`` with ``act``; ``x`` then a fresh activation), ``+ residual``
        when given (the output's shape)."""
        if self.kernel_t == 1 and self.stride_t == 1:
            x = silu(x) if act else x
            return conv3d(self.conv, x, self.conv.weight, self.conv.bias, residual=residual)
        buf = take_windows(
            x, state, self.cache_key, self.time_pad, self.kernel_t, self.stride_t, self.replicate, act
        )
        if buf is None:
            return empty_frames(x, self.conv.out_channels)
        p = self.space_pad
        w, b = self.conv.weight, self.conv.bias
        return conv3d(self.conv, buf, w, b, (self.stride_t, 1, 1), (0, p, p), residual)


class CausalConv1d(Streaming):
    """Official CausalConv1d over time at every pixel (keys ``conv.weight`` of shape (out, in, k))."""

    def __init__(self, chan_in: int, chan_out: int, kernel_size: int, replicate: bool = False):
        super().__init__()
        self.kernel_t = kernel_size
        self.replicate = replicate
        self.conv = nn.Conv1d(chan_in, chan_out, kernel_size)

    def forward(
        self, x: Tensor, state: StreamState, act: bool = False, residual: Tensor | None = None
    ) -> Tensor:
        """The convolution of ``x`` (of ``silu(x)`` with ``act``; ``x`` then a fresh activation), ``+ residual``
        when given (the output's shape)."""
        weight = self.conv.weight[..., None, None]
        if self.kernel_t == 1:
            return conv3d(self.conv, silu(x) if act else x, weight, self.conv.bias, residual=residual)
        buf = take_windows(x, state, self.cache_key, self.kernel_t - 1, self.kernel_t, 1, self.replicate, act)
        if buf is None:
            return empty_frames(x, self.conv.out_channels)
        return conv3d(self.conv, buf, weight, self.conv.bias, residual=residual)


class SymConv3d(nn.Conv3d):
    """Non-causal nn.Conv3d (official keys without a ``.conv`` level); the state is ignored."""

    def forward(  # type: ignore[override]
        self, x: Tensor, state: StreamState | None = None, residual: Tensor | None = None
    ) -> Tensor:
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            y = super().forward(x)
            return y if residual is None else add_residual(y, residual)
        return conv3d(self, x, self.weight, self.bias, tuple(self.stride), tuple(self.padding), residual)


class SymConv1d(nn.Conv1d):
    """Non-causal nn.Conv1d over time at every pixel (zero padding (k-1)/2)."""

    def forward(  # type: ignore[override]
        self, x: Tensor, state: StreamState | None = None, residual: Tensor | None = None
    ) -> Tensor:
        pad = (self.kernel_size[0] - 1) // 2
        return conv3d(self, x, self.weight[..., None, None], self.bias, (1, 1, 1), (pad, 0, 0), residual)


def in_float32(fn: Any, x: Tensor, *args: Any) -> Tensor:
    """``fn(x, *args)`` in float32 with autocast off (the latent head under reduced precision)."""
    if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return fn(x.float(), *args)
    return fn(x, *args)


def silu(x: Tensor) -> Tensor:
    """SiLU; in place when no graph is recorded (``x`` must be a fresh activation, e.g. a norm's output)."""
    return F.silu(x, inplace=inplace_ok())


# ----------------------------------------------------------------------------- residual blocks


def residual_chain(block: nn.Module, x: Tensor, state: StreamState) -> Tensor:
    """``x + conv2(dropout(silu(norm2(conv1(silu(norm1(x)))))))`` of a temporal or 3-D residual block.

    Causal convolutions take the SiLU into the buffer they assemble with their cached frames; the last
    convolution adds ``x`` as it writes its output.
    """
    if isinstance(block.conv1, (CausalConv1d, CausalConv3d)):
        h = block.conv1(apply_norm(block.norm1, x, block.scope), state, act=True)
        h = apply_norm(block.norm2, h, block.scope)
        if block.dropout.p == 0 or not block.training:
            return block.conv2(h, state, act=True, residual=x)
        return block.conv2(block.dropout(silu(h)), state, residual=x)
    h = block.conv1(silu(apply_norm(block.norm1, x, block.scope)), state)
    return block.conv2(block.dropout(silu(apply_norm(block.norm2, h, block.scope))), state, residual=x)


class ResnetBlock2D(nn.Module):
    """Spatial residual block applied per frame (official ``ResnetBlock``)."""

    def __init__(self, in_channels: int, out_channels: int, norm_type: str, dropout: float = 0.0):
        super().__init__()
        self.norm1 = make_norm(norm_type, in_channels)
        self.conv1 = FrameConv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = make_norm(norm_type, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = FrameConv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = FrameConv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(silu(apply_norm(self.norm1, x, "frame")))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return self.conv2(self.dropout(silu(apply_norm(self.norm2, h, "frame"))), residual=x)


class TemporalResBlock(nn.Module):
    """Temporal residual block over time at every pixel (official ``ResnetCausalBlock1D``/``ResnetBlock1D``)."""

    def __init__(self, channels: int, norm_type: str, causal: bool, replicate: bool, dropout: float = 0.0):
        super().__init__()
        self.scope = "pixel_frame" if causal else "pixel"

        def conv() -> nn.Module:
            return (
                CausalConv1d(channels, channels, 3, replicate=replicate)
                if causal
                else SymConv1d(channels, channels, 3)
            )

        # registration order = official state-dict order
        self.norm1 = make_norm(norm_type, channels)
        self.conv1 = conv()
        self.norm2 = make_norm(norm_type, channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv()

    def zero_init_(self) -> None:
        """Official init: the second convolution starts at zero, so the block starts as identity."""
        conv = self.conv2.conv if isinstance(self.conv2, CausalConv1d) else self.conv2
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor, state: StreamState) -> Tensor:
        return residual_chain(self, x, state)


class ResnetBlock3D(nn.Module):
    """Spatio-temporal residual block of the middle stage (official ``ResnetCausalBlock``/``ResnetNoncausalBlock``)."""

    def __init__(self, channels: int, norm_type: str, causal: bool, replicate: bool, dropout: float = 0.0):
        super().__init__()
        self.scope = "frame" if causal else "clip"

        def conv() -> nn.Module:
            if causal:
                return CausalConv3d(channels, channels, 3, replicate=replicate)
            return SymConv3d(channels, channels, 3, padding=1)

        self.norm1 = make_norm(norm_type, channels)
        self.conv1 = conv()
        self.norm2 = make_norm(norm_type, channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv()

    def forward(self, x: Tensor, state: StreamState) -> Tensor:
        return residual_chain(self, x, state)


class FrameAttention(nn.Module):
    """Single-head self-attention over the H*W positions of each frame (official ``AttnBlockWrapper``)."""

    def __init__(self, channels: int, norm_type: str, causal: bool):
        super().__init__()
        self.scope = "frame" if causal else "clip"
        self.norm = make_norm(norm_type, channels)
        if causal:
            self.q: nn.Module = CausalConv3d(channels, channels, 1)
            self.k: nn.Module = CausalConv3d(channels, channels, 1)
            self.v: nn.Module = CausalConv3d(channels, channels, 1)
            self.proj_out: nn.Module = CausalConv3d(channels, channels, 1)
        else:
            self.q = SymConv3d(channels, channels, 1)
            self.k = SymConv3d(channels, channels, 1)
            self.v = SymConv3d(channels, channels, 1)
            self.proj_out = SymConv3d(channels, channels, 1)

    @staticmethod
    def _linear(conv: nn.Module, x_cl: Tensor) -> Tensor:
        inner = conv.conv if isinstance(conv, CausalConv3d) else conv
        w = inner.weight
        return F.linear(x_cl, w.reshape(w.shape[0], w.shape[1]), inner.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        if t == 0:
            return x
        hn = positions(apply_norm(self.norm, x, self.scope)).reshape(b, t, h * w, c)
        q, k, v = (self._linear(m, hn) for m in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v)
        out = self._linear(self.proj_out, a)
        return add_residual(video(out.reshape(b, t, h, w, c)), x)
