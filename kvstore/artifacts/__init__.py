"""Versioned artifacts: numbered immutable versions, claimed by conditional create, streamed.

Layout below ``{base}`` (:mod:`kvstore.layout`; docs/architecture.md, "Layout")::

    art/{enc(name)}/{version:020d}          the version's manifest (an envelope)
    art/{enc(name)}/{version:020d}.deleted  marker of a deleted version
    artpart/{enc(name)}/{upload}/{i:06d}    parts of a large artifact (envelopes)
    artpart/{enc(name)}/{upload}/raw        a raw version's data, byte for byte

One module per job: :mod:`.manifest` (what a manifest says; the checks on a save's
arguments), :mod:`.sources` (what a save is given), :mod:`.versions` (finding versions:
listings, cached manifests, the latest pointer), :mod:`.store` (``AsyncArtifacts``),
:mod:`.reader` (streaming reads and their file face), :mod:`.raw` (raw versions' objects,
verified against their manifests), :mod:`.limits` (the numbers).
"""

from __future__ import annotations

from . import limits
from .manifest import Artifact, ArtifactInfo, is_compressed_type
from .reader import ArtifactFile, AsyncArtifactReader
from .store import AsyncArtifacts

__all__ = [
    "Artifact",
    "ArtifactFile",
    "ArtifactInfo",
    "AsyncArtifactReader",
    "AsyncArtifacts",
    "is_compressed_type",
    "limits",
]
