"""The constants of the .vtok byte format (docs/FORMAT.md): magic numbers, versions, fixed structs, record
types, stream kinds, codings, limits, and the low-level errors raised while parsing."""

from __future__ import annotations

import struct

from ..errors import VidtokError


class ContainerError(VidtokError):
    """A .vtok file that cannot be written, or that is not a .vtok file, is damaged, or cut short."""


MAGIC = b"\x89VTK\r\n\x1a\n"
END_MAGIC = b"VTOK_END"
FORMAT_VERSION = (1, 1)
"""The version this package writes; it reads every minor version of major 1 up to this one."""

PREAMBLE = struct.Struct("<8sHHI")  # magic, major, minor, header_len; then header JSON, then u32 CRC
RECORD_HEAD = struct.Struct("<BBHQI")  # type, flags, reserved, payload_len, meta_len
TRAILER = struct.Struct("<Q8s")  # footer offset, end magic
CRC = struct.Struct("<I")
RANS_HEAD = struct.Struct("<BBHIII")  # scale_bits, model, reserved, lanes, n_words, n_coded

MIN_RECORD = RECORD_HEAD.size + CRC.size


class RecordType:
    """Record type numbers (the u8 at the start of every record)."""

    LATENT = 1  # format 1.0 only: the latents of a mode-latent file
    TOKENS = 2  # format 1.0 only: the FSQ indices of a mode-tokens file
    AUDIO = 3
    SEGMENT = 4
    CHUNK = 5  # format 1.1: one stream's part of a chunk (the stream index is in the metadata)
    END = 255

    NAMES = {1: "latent", 2: "tokens", 3: "audio", 4: "segment", 5: "chunk", 255: "end"}

    @classmethod
    def name(cls, value: int) -> str:
        """Human name of a record type, or ``"type N"`` for one this version does not know."""
        return cls.NAMES.get(value, f"type {value}")


VIDEO_TYPES = (RecordType.LATENT, RecordType.TOKENS, RecordType.SEGMENT, RecordType.CHUNK)
CHUNK_TYPES = (RecordType.LATENT, RecordType.TOKENS, RecordType.CHUNK)
# The chunk record types of each minor version of the format.
CHUNK_TYPES_OF = {0: (RecordType.LATENT, RecordType.TOKENS), 1: (RecordType.CHUNK,)}

# Codings of token streams (low 4 bits of the flags byte of a token record).
CODING_PACKED = 0
CODING_RANS = 1
CODING_NAMES = {CODING_PACKED: "packed", CODING_RANS: "rans"}
# Codings of continuous streams (the flags byte of their records): raw floats, or quantized and rANS-coded.
LATENT_RAW = 0
LATENT_QUANT = 1
QUANT_MIN_BITS, QUANT_MAX_BITS = 2, 16

STREAM_KINDS = ("continuous", "fsq", "vq")
# A stream's ``coding`` in the header: continuous streams are stored raw (in their dtype) or ``quant``
# (quantized at the stream's ``bits``, rANS-coded); token streams are always packed, or ``auto`` (each
# record packed or rANS, whichever is smaller).
STREAM_CODINGS = {"continuous": ("raw", "quant"), "fsq": ("auto", "packed"), "vq": ("auto", "packed")}
MODES = ("latent", "tokens", "motion", "twin")  # format 1.0's header ``mode`` (motion and twin were reserved)
V10_MODES = ("latent", "tokens")  # the 1.0 modes that were ever written
LATENT_DTYPES = ("float16", "bfloat16", "float32")
ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4}
# Header keys that fix how records decode; they cannot be changed by the footer's header_updates.
FROZEN_KEYS = ("mode", "model", "latent", "streams", "frame_layout")

# Limits that keep a damaged or hostile file from causing huge allocations or endless loops.
MAX_VALUES_PER_RECORD = 1 << 25
MAX_STREAMS = 64
MAX_CODEBOOK = 1 << 62
RANS_MAX_STEPS = 1 << 16
RANS_MAX_LEVEL = 256


class Damaged(Exception):
    """A damaged structure; the reader turns it into a ContainerError naming file and record."""

    def __init__(self, msg: str, frames: tuple[int, int] | None = None):
        super().__init__(msg)
        self.frames = frames


class CutShort(Exception):
    """The file ends inside a structure."""


# What parsing damaged bytes can raise beyond the explicit checks; turned into ContainerError at the API.
PARSE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    struct.error,
    MemoryError,
    RecursionError,
)
