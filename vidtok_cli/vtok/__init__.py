"""The .vtok container: a header, checksummed records streamed as the encoder produces them, a footer index.

``docs/FORMAT.md`` is the byte-level specification; this package is its reference implementation. It uses
numpy and the standard library only (no torch), so files can be inspected and verified without a model.

Write::

    header = make_header(model_card=..., weights_sha256=...,
                         streams=[stream_entry("tokens", "fsq", (h, w), time_axis=0, levels=(8, 8, 8))], ...)
    with VtokWriter("clip.vtok", header) as w:
        w.write_chunk({"tokens": indices}, first_frame=0, end_frame=1, first_latent=0)
        ...
        w.close(header_updates={"source": {"frame_count": 300}})

Read::

    r = VtokReader("clip.vtok")          # format 1.0 files too: their one stream is ``latent`` or ``tokens``
    for chunk in r.iter_chunks():
        chunk.latents["tokens"]          # also chunk.first_latent, .first_frame, .end_frame, .segment_start

Modules: ``format`` (constants, record types, limits), ``streams`` (the named latent streams), ``header``,
``payloads`` (latents, bit packing, FSQ digits), ``rans`` (the entropy coder), ``tokens`` (token record
coding), ``quant`` (quantized continuous records), ``records``, ``writer``, ``reader``.
"""

from __future__ import annotations

from .format import (
    CODING_PACKED,
    CODING_RANS,
    END_MAGIC,
    FORMAT_VERSION,
    LATENT_DTYPES,
    MAGIC,
    MAX_VALUES_PER_RECORD,
    QUANT_MAX_BITS,
    QUANT_MIN_BITS,
    RANS_MAX_LEVEL,
    RANS_MAX_STEPS,
    STREAM_KINDS,
    ContainerError,
    RecordType,
)
from .header import make_header, validate_header
from .payloads import (
    bfloat16_bits_to_float32,
    bits_for_levels,
    float32_to_bfloat16_bits,
    pack_indices,
    tokens_to_latents,
    unpack_indices,
)
from .reader import VtokReader
from .records import AudioRecord, IndexEntry, Record, StoredChunk, StoredTokenChunk, VtokChunk
from .streams import Stream, parse_streams, stream_entry
from .tokens import token_coding_report
from .writer import VtokWriter

__all__ = [
    "ContainerError",
    "VtokWriter",
    "VtokReader",
    "Record",
    "RecordType",
    "AudioRecord",
    "VtokChunk",
    "Stream",
    "stream_entry",
    "parse_streams",
    "StoredChunk",
    "StoredTokenChunk",
    "IndexEntry",
    "make_header",
    "validate_header",
    "pack_indices",
    "unpack_indices",
    "bits_for_levels",
    "float32_to_bfloat16_bits",
    "bfloat16_bits_to_float32",
    "tokens_to_latents",
    "token_coding_report",
    "MAGIC",
    "END_MAGIC",
    "FORMAT_VERSION",
    "CODING_PACKED",
    "CODING_RANS",
    "STREAM_KINDS",
    "LATENT_DTYPES",
    "MAX_VALUES_PER_RECORD",
    "RANS_MAX_STEPS",
    "RANS_MAX_LEVEL",
    "QUANT_MIN_BITS",
    "QUANT_MAX_BITS",
]
