"""The rANS coder of token records (docs/FORMAT.md, "rANS token coding"): token models that turn FSQ indices
into symbol groups (repeat flags, plain or delta digits), and interleaved rANS over those groups."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .format import RANS_HEAD, RANS_MAX_LEVEL, RANS_MAX_STEPS, Damaged
from .payloads import bits_for_levels, from_fsq_digits, fsq_digits

_RANS_SCALE = 14
_RANS_L = 1 << 16
_RANS_TARGET_STEPS = 2048


def _quantise_freqs(counts: np.ndarray, scale: int) -> np.ndarray:
    """Frequencies summing to 2**scale, at least 1 for every symbol that occurs."""
    m = 1 << scale
    n = int(counts.sum())
    f = (counts.astype(np.int64) * m) // max(n, 1)
    f[(counts > 0) & (f == 0)] = 1
    if n == 0:
        f[0] = m
    diff = m - int(f.sum())
    if diff > 0:
        f[int(np.argmax(counts))] += diff
    while diff < 0:
        i = int(np.argmax(f))
        take = min(-diff, int(f[i]) - 1)
        f[i] -= take
        diff += take
    return f


def _code_cost(counts: np.ndarray, freqs: np.ndarray, scale: int) -> float:
    used = counts > 0
    return float(-(counts[used] * (np.log2(freqs[used]) - scale)).sum())


@dataclass
class TokenModel:
    """How one record's tokens are turned into rANS symbol groups (docs/FORMAT.md, "rANS token coding")."""

    repeat: bool  # a repeat-flag group comes first
    transforms: list[int]  # per level: 0 plain digits, 1 temporal difference mod L
    groups: list[np.ndarray]  # symbols in coding order
    tables: list[np.ndarray]  # quantised frequencies per group
    cost: float  # estimated size of the coded symbols, bits
    entropy: float  # empirical order-0 entropy of the groups, bits


def _entropy_bits(counts: np.ndarray) -> float:
    c = counts[counts > 0].astype(np.float64)
    return float(-(c * np.log2(c / c.sum())).sum()) if c.size else 0.0


def _token_model(indices: np.ndarray, levels: list[int], repeat: bool) -> TokenModel:
    digits = fsq_digits(indices, levels)
    t = indices.shape[0]
    groups: list[np.ndarray] = []
    tables: list[np.ndarray] = []
    cost = entropy = 0.0
    if repeat:
        flags = indices[1:] == indices[:-1]
        mask = np.concatenate([np.ones((1,) + indices.shape[1:], dtype=bool), ~flags])
        fs = flags.reshape(-1).astype(np.int64)
        counts = np.bincount(fs, minlength=2)
        f = _quantise_freqs(counts, _RANS_SCALE)
        groups.append(fs)
        tables.append(f)
        cost += _code_cost(counts, f, _RANS_SCALE)
        entropy += _entropy_bits(counts)
    else:
        mask = np.ones(indices.shape, dtype=bool)
    transforms: list[int] = []
    for i, lv in enumerate(levels):
        d = digits[i]
        best = None
        for tr in (0, 1) if t > 1 else (0,):
            sym = d if tr == 0 else np.concatenate([d[:1], (d[1:] - d[:-1]) % lv])
            sym = sym[mask]
            counts = np.bincount(sym, minlength=lv)
            f = _quantise_freqs(counts, _RANS_SCALE)
            c = _code_cost(counts, f, _RANS_SCALE)
            if best is None or c < best[0]:
                best = (c, tr, sym, f, _entropy_bits(counts))
        assert best is not None
        cost += best[0]
        entropy += best[4]
        transforms.append(best[1])
        groups.append(best[2])
        tables.append(best[3])
    return TokenModel(repeat, transforms, groups, tables, cost, entropy)


def _rans_lanes(n: int) -> int:
    return max(1, -(-n // _RANS_TARGET_STEPS))


def _model_size(m: TokenModel) -> float:
    """Estimated payload bytes of a token model."""
    n = sum(len(g) for g in m.groups)
    return RANS_HEAD.size + sum(1 + 2 * len(t) for t in m.tables) + 4 * _rans_lanes(n) + m.cost / 8


def choose_token_model(indices: np.ndarray, levels: list[int]) -> TokenModel:
    """The token model (with or without repeat flags) with the smallest estimated payload."""
    models = [_token_model(indices, levels, False)]
    if indices.shape[0] > 1:
        models.append(_token_model(indices, levels, True))
    return min(models, key=_model_size)


def _rans_tables(tables: list[np.ndarray], scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Freq, cum and slot->symbol tables, one row per group plus a padding row (freq 2**scale, cum 0)."""
    m = 1 << scale
    width = max(len(t) for t in tables)
    rows = len(tables) + 1
    freq = np.zeros((rows, width), dtype=np.uint64)
    cum = np.zeros((rows, width), dtype=np.uint64)
    slot = np.zeros((rows, m), dtype=np.int64)
    for r, t in enumerate(tables):
        t = t.astype(np.int64)
        freq[r, : len(t)] = t
        cum[r, : len(t)] = np.concatenate([[0], np.cumsum(t)[:-1]])
        slot[r] = np.repeat(np.arange(len(t)), t)
    freq[-1, 0] = m
    return freq, cum, slot


def _rans_encode_groups(
    groups: list[np.ndarray], tables: list[np.ndarray], scale: int
) -> tuple[int, np.ndarray, np.ndarray]:
    """Interleaved rANS over the concatenated groups: (lanes, final states u32, 16-bit words in read order)."""
    sizes = [len(g) for g in groups]
    n = sum(sizes)
    lanes = _rans_lanes(n)
    steps = -(-n // lanes)
    total = steps * lanes
    freq, cum, _ = _rans_tables(tables, scale)
    width = freq.shape[1]
    rows = np.full(total, len(groups), dtype=np.int64)
    rows[:n] = np.repeat(np.arange(len(groups)), sizes)
    sym_all = np.zeros(total, dtype=np.int64)
    sym_all[:n] = np.concatenate(groups)
    flat = rows * width + sym_all
    f_all = freq.reshape(-1)[flat].reshape(steps, lanes)
    c_all = cum.reshape(-1)[flat].reshape(steps, lanes)
    x = np.full(lanes, _RANS_L, dtype=np.uint64)
    shift = np.uint64(32 - scale)
    sc = np.uint64(scale)
    w16 = np.uint64(16)
    mask16 = np.uint64(0xFFFF)
    chunks: list[np.ndarray] = []
    for s in range(steps - 1, -1, -1):  # rANS encodes backwards; the decoder reads forwards
        f = f_all[s]
        emit = x >= (f << shift)
        if emit.any():
            chunks.append((x[emit] & mask16).astype(np.uint16))
            x[emit] >>= w16
        q, r = np.divmod(x, f)
        x = (q << sc) + r + c_all[s]
    words = np.concatenate(chunks[::-1]) if chunks else np.zeros(0, dtype=np.uint16)
    return lanes, x, words


def _rans_decode_groups(
    x: np.ndarray, words: np.ndarray, lanes: int, sizes: list[int], tables: list[np.ndarray], scale: int
) -> list[np.ndarray]:
    """Inverse of _rans_encode_groups; raises Damaged when the stream is inconsistent."""
    n = sum(sizes)
    steps = -(-n // lanes)
    m = 1 << scale
    freq, cum, slot = _rans_tables(tables, scale)
    width = freq.shape[1]
    bounds = np.cumsum(sizes)
    lane_ar = np.arange(lanes, dtype=np.int64)
    slot_flat = slot.reshape(-1)
    freq_flat = freq.reshape(-1)
    cum_flat = cum.reshape(-1)
    out = np.empty((steps, lanes), dtype=np.uint8)
    mask = np.uint64(m - 1)
    sc = np.uint64(scale)
    w16 = np.uint64(16)
    low = np.uint64(_RANS_L)
    n_words = int(words.size)
    wpos = 0
    for s in range(steps):
        row = np.searchsorted(bounds, s * lanes + lane_ar, side="right")  # past the end: the padding row
        sl = x & mask
        sym = slot_flat[row * m + sl.astype(np.int64)]
        k = row * width + sym
        x = freq_flat[k] * (x >> sc) + sl - cum_flat[k]
        need = x < low
        cnt = int(np.count_nonzero(need))
        if cnt:
            if wpos + cnt > n_words:
                raise Damaged("rANS payload ends early")
            x[need] = (x[need] << w16) | words[wpos : wpos + cnt]
            wpos += cnt
        out[s] = sym
    if wpos != n_words or bool((x != low).any()):
        raise Damaged("rANS payload does not decode to its final state")
    flat_out = out.reshape(-1)
    starts = np.concatenate([[0], bounds[:-1]])
    return [flat_out[a : a + size] for a, size in zip(starts.tolist(), sizes, strict=True)]


def rans_encode(indices: np.ndarray, levels: list[int]) -> bytes | None:
    """rANS-coded payload of FSQ indices (t, h, w) (docs/FORMAT.md); None when it cannot beat plain packing."""
    if max(levels) > RANS_MAX_LEVEL or len(levels) > 255 or indices.size == 0:
        return None
    packed_len = (int(indices.size) * bits_for_levels(levels) + 7) // 8
    model = choose_token_model(indices, levels)
    if _model_size(model) >= packed_len:
        return None
    lanes, states, words = _rans_encode_groups(model.groups, model.tables, _RANS_SCALE)
    n_coded = len(model.groups[-1])
    parts = [RANS_HEAD.pack(_RANS_SCALE, int(model.repeat), 0, lanes, int(words.size), n_coded)]
    transforms = ([0] if model.repeat else []) + model.transforms
    for tr, t in zip(transforms, model.tables, strict=True):
        parts.append(bytes([tr]))
        parts.append(t.astype("<u2").tobytes())
    parts.append(states.astype("<u4").tobytes())
    parts.append(words.astype("<u2").tobytes())
    out = b"".join(parts)
    return out if len(out) < packed_len else None


def rans_decode(data: bytes, levels: list[int], shape: tuple[int, ...]) -> np.ndarray:
    """Indices (shape) int64 from an rANS payload; raises Damaged on any inconsistency."""
    if len(data) < RANS_HEAD.size:
        raise Damaged("rANS payload is shorter than its header")
    scale, model, reserved, lanes, n_words, n_coded = RANS_HEAD.unpack_from(data, 0)
    if not 8 <= scale <= 16:
        raise Damaged(f"rANS payload has an invalid scale ({scale} bits)")
    if model not in (0, 1):
        raise Damaged(f"rANS token model {model} is unknown to this version of vidtok")
    repeat = model == 1
    t, h, w = (int(v) for v in shape)
    count, plane = t * h * w, h * w
    if not (plane <= n_coded <= count if repeat else n_coded == count):
        raise Damaged(f"rANS payload codes {n_coded} of {count} tokens, which is impossible")
    alphabets = ([2] if repeat else []) + list(levels)
    sizes = ([(t - 1) * plane] if repeat else []) + [n_coded] * len(levels)
    n = sum(sizes)
    if lanes < 1 or lanes > n:
        raise Damaged(f"rANS payload has an impossible lane count ({lanes})")
    steps = -(-n // lanes)
    if steps > RANS_MAX_STEPS:
        raise Damaged(f"rANS payload needs {steps} steps, more than the limit {RANS_MAX_STEPS}")
    expect = RANS_HEAD.size + sum(1 + 2 * a for a in alphabets) + 4 * lanes + 2 * n_words
    if expect != len(data):
        raise Damaged(f"rANS payload is {len(data)} bytes, its header describes {expect}")
    m = 1 << scale
    pos = RANS_HEAD.size
    transforms: list[int] = []
    tables: list[np.ndarray] = []
    for g, a in enumerate(alphabets):
        tr = data[pos]
        if tr not in (0, 1) or (repeat and g == 0 and tr != 0):
            raise Damaged(f"unknown digit transform {tr} in rANS payload")
        tab = np.frombuffer(data, dtype="<u2", count=a, offset=pos + 1).astype(np.int64)
        if int(tab.sum()) != m:
            raise Damaged("rANS frequency table does not sum to its scale")
        transforms.append(tr)
        tables.append(tab)
        pos += 1 + 2 * a
    x = np.frombuffer(data, dtype="<u4", count=lanes, offset=pos).astype(np.uint64)
    pos += 4 * lanes
    words = np.frombuffer(data, dtype="<u2", count=n_words, offset=pos).astype(np.uint64)
    if int(x.min()) < _RANS_L:
        raise Damaged("rANS payload has an invalid initial state")
    groups = _rans_decode_groups(x, words, lanes, sizes, tables, scale)
    if repeat:
        flags = groups[0].reshape(t - 1, h, w).astype(bool)
        groups, transforms = groups[1:], transforms[1:]
        mask = np.concatenate([np.ones((1, h, w), dtype=bool), ~flags])
        if int(mask.sum()) != n_coded:
            raise Damaged("rANS repeat flags do not match the number of coded tokens")
    else:
        flags = np.zeros((max(t - 1, 0), h, w), dtype=bool)
        mask = np.ones((t, h, w), dtype=bool)
    digits = np.zeros((len(levels), t, h, w), dtype=np.int64)
    for i, lv in enumerate(levels):
        grid = np.zeros((t, h, w), dtype=np.int64)
        grid[mask] = groups[i]
        digits[i, 0] = grid[0]
        for k in range(1, t):
            prev = digits[i, k - 1]
            new = (prev + grid[k]) % lv if transforms[i] else grid[k]
            digits[i, k] = np.where(flags[k - 1], prev, new)
    return from_fsq_digits(digits, levels)
