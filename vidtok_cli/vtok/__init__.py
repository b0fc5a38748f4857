"""The .vtok container: a header, checksummed records streamed as the encoder produces them, a footer index.

``docs/FORMAT.md`` is the byte-level specification; this package is its reference implementation. It uses
numpy and the standard library only (no torch), so files can be inspected and verified without a model.

Write::

    header = make_header(model_card=..., weights_sha256=..., mode="tokens", ...)
    with VtokWriter("clip.vtok", header) as w:
        w.write_tokens(indices, first_frame=0, end_frame=1, first_latent=0)
        ...
        w.close(header_updates={"source": {"frame_count": 300}})

Read::

    r = VtokReader("clip.vtok")
    for chunk in r.iter_latent_chunks():
        first_latent, latents = chunk        # also chunk.first_frame, .end_frame, .segment_start

Modules: ``format`` (constants, record types, limits), ``header``, ``payloads`` (latents, bit packing,
FSQ digits), ``rans`` (the entropy coder), ``tokens`` (token record coding), ``records``, ``writer``,
``reader``.
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
    MODES,
    RANS_MAX_LEVEL,
    RANS_MAX_STEPS,
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
from .records import AudioRecord, IndexEntry, Record, StoredChunk, StoredTokenChunk
from .tokens import token_coding_report
from .writer import VtokWriter

__all__ = [
    "ContainerError",
    "VtokWriter",
    "VtokReader",
    "Record",
    "RecordType",
    "AudioRecord",
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
    "MODES",
    "LATENT_DTYPES",
    "MAX_VALUES_PER_RECORD",
    "RANS_MAX_STEPS",
    "RANS_MAX_LEVEL",
]
