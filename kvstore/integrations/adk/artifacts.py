"""ADK's ``BaseArtifactService`` on kvstore's versioned artifacts (``store.artifacts``).

An ADK artifact ``filename`` of a session is the kvstore artifact
``store.sessions.artifact_name(app, user, session_id, filename)``; a ``user:``-prefixed
filename is the user's, across sessions (``artifact_name(app, user, None, filename)``,
the prefix kept in the name). So deleting the session - ``store.sessions.delete`` or
``KVStoreSessionService.delete_session`` - deletes its artifacts, and deleting the user or
the app (``sessions.delete_user``/``delete_app``) deletes theirs.

Each ADK version is one kvstore version (0, 1, 2, ...), claimed by a conditional create:
any number of concurrent ``save_artifact`` calls, in any number of processes, get distinct
versions. Data above ``inline_max`` bytes (64 KiB by default) is saved ``raw`` - one
object, uploaded once, that the version's small manifest names - so a save that loses a
race for a version number sends only its manifest again, never the data; smaller data
rides in the manifest (one PUT in all; a lost race sends it again).

What the ``types.Part`` was is kept in the version's metadata (``{"adk": {...},
"custom": custom_metadata}``): an inline blob's bytes are the artifact's data (its mime
type the version's), a text part's text is its UTF-8 data, a ``file_data`` part is kept
as its reference with no data. Every other field of the part comes back as it was saved.

Costs: ``save_artifact`` one conditional PUT (+ one PUT of the data above ``inline_max``;
+ a LIST when this process does not know the latest version); ``load_artifact`` one GET
(+ a LIST for the latest, + a GET of a raw version's data); ``list_versions`` one LIST;
``list_artifact_versions`` and ``get_artifact_version`` read only the manifests' headers
(one ranged GET each, none cached) - no data; ``list_artifact_keys`` two LISTs,
concurrently; ``delete_artifact`` a LIST and a write per version.

Deviation from ADK's in-memory and GCS services: kvstore never reuses a version number,
so after ``delete_artifact`` the next save continues the numbering instead of starting at
0 again (an old event's ``artifact_delta`` never names different data).
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.adk.artifacts import artifact_util
from google.adk.artifacts.base_artifact_service import (
    ArtifactVersion,
    BaseArtifactService,
    ensure_part,
)
from google.adk.errors.input_validation_error import InputValidationError
from google.genai import types
from typing_extensions import override

from ...artifacts.manifest import Artifact, ArtifactInfo
from ...sync import KVStore
from ._store import StoreBacked

USER_PREFIX = "user:"
INLINE_MAX = 64 << 10
"""Data above this many bytes is saved raw: uploaded once whatever the races."""
MAX_REFERENCE_DEPTH = 5
"""``artifact://`` references followed by one load (as ADK's own services)."""
META = "adk"
CUSTOM = "custom"
TEXT_MIME = "text/plain"
_INLINE, _TEXT, _FILE = "inline", "text", "file"
_REWIND_TOMBSTONE = types.Part(
    inline_data=types.Blob(mime_type="application/octet-stream", data=b"")
)
"""What ADK saves to remove an artifact when a session is rewound: loads as absent."""


class KVStoreArtifactService(StoreBacked, BaseArtifactService):
    """ADK's artifact service over a kvstore: built from ``store`` (a blocking
    ``kvstore.KVStore``) or from ``url=`` and the usual ``kvstore.open`` arguments (then
    :meth:`close` closes it); ``namespace``: a prefix confining it. ``inline_max``: data
    above this many bytes is saved raw (see the module docstring)."""

    def __init__(
        self,
        store: KVStore | None = None,
        *,
        url: str | None = None,
        namespace: str | None = None,
        inline_max: int = INLINE_MAX,
        **open_kwargs: Any,
    ) -> None:
        if isinstance(inline_max, bool) or not isinstance(inline_max, int) or inline_max < 0:
            raise ValueError(f"inline_max must be an int >= 0, not {inline_max!r}")
        super().__init__(store, url=url, namespace=namespace, **open_kwargs)
        self.inline_max = inline_max

    def __repr__(self) -> str:
        return f"<KVStoreArtifactService on {self.store!r}>"

    # -- naming ------------------------------------------------------------------------------

    def _name(self, app_name: str, user_id: str, filename: str, session_id: str | None) -> str:
        """The kvstore artifact name; refuses what ADK's services refuse."""
        artifact_util.validate_path_segment(app_name, "app_name")
        artifact_util.validate_path_segment(user_id, "user_id")
        if not isinstance(filename, str) or not filename:
            raise InputValidationError(f"filename must be a non-empty str, not {filename!r}")
        if filename.startswith(USER_PREFIX):
            return self.store.sessions.artifact_name(app_name, user_id, None, filename)
        if session_id is None:
            raise InputValidationError("Session ID must be provided for session-scoped artifacts.")
        artifact_util.validate_path_segment(session_id, "session_id")
        return self.store.sessions.artifact_name(app_name, user_id, session_id, filename)

    def _prefix(self, app_name: str, user_id: str, session_id: str | None) -> str:
        """The names of a session's artifacts (None: the user's) start with this."""
        name = self.store.sessions.artifact_name(app_name, user_id, session_id, "-")
        return name[:-1]

    @staticmethod
    def _uri(
        app_name: str, user_id: str, filename: str, session_id: str | None, version: int
    ) -> str:
        """The version's ``artifact://`` URI: what ADK's services load as a reference."""
        scope = None if filename.startswith(USER_PREFIX) else session_id
        return artifact_util.get_artifact_uri(app_name, user_id, filename, version, scope)

    # -- saving ------------------------------------------------------------------------------

    @override
    async def save_artifact(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        artifact: types.Part | dict[str, Any],
        session_id: str | None = None,
        custom_metadata: dict[str, Any] | None = None,
    ) -> int:
        name = self._name(app_name, user_id, filename, session_id)
        part = ensure_part(artifact)
        data, kind, adk_mime, store_mime = self._split(part, app_name, user_id, session_id)
        shape = part.model_dump(mode="json", exclude_none=True)
        if kind == _INLINE:
            shape["inline_data"].pop("data", None)
        elif kind == _TEXT:
            shape.pop("text", None)
        if custom_metadata is not None and not isinstance(custom_metadata, dict):
            raise InputValidationError(
                f"custom_metadata must be a dict, not {type(custom_metadata).__name__}"
            )
        metadata = {
            META: {"kind": kind, "mime": adk_mime, "part": shape},
            CUSTOM: dict(custom_metadata or {}),
        }
        raw = len(data) > self.inline_max
        save = self._aio.artifacts.save(name, data, store_mime, metadata, raw=raw)
        return await self._run(save)

    @staticmethod
    def _split(
        part: types.Part, app_name: str, user_id: str, session_id: str | None
    ) -> tuple[bytes, str, str | None, str | None]:
        """(data, kind, the mime type ADK reports, the mime type kvstore stores)."""
        if part.inline_data is not None:
            if part.inline_data.data is None:
                raise InputValidationError("Artifact inline_data must contain data.")
            mime = part.inline_data.mime_type
            return bytes(part.inline_data.data), _INLINE, mime, mime
        if part.text is not None:
            return part.text.encode("utf-8"), _TEXT, TEXT_MIME, "text/plain; charset=utf-8"
        file_data = part.file_data
        if file_data is not None:
            if not file_data.file_uri:
                raise InputValidationError("Artifact file_data must have a file_uri.")
            if artifact_util.is_artifact_ref(part):
                parsed = artifact_util.parse_artifact_uri(file_data.file_uri)
                if parsed is None:
                    raise InputValidationError(
                        f"Invalid artifact reference URI: {file_data.file_uri}"
                    )
                artifact_util.validate_artifact_reference_scope(
                    app_name=app_name, user_id=user_id, session_id=session_id, parsed_uri=parsed
                )
                return b"", _FILE, None, file_data.mime_type
            return b"", _FILE, file_data.mime_type, file_data.mime_type
        raise InputValidationError("Not supported artifact type.")

    # -- loading -----------------------------------------------------------------------------

    @override
    async def load_artifact(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None = None,
        version: int | None = None,
    ) -> types.Part | None:
        depth = MAX_REFERENCE_DEPTH
        while True:
            name = self._name(app_name, user_id, filename, session_id)
            if not _is_version(version):
                return None
            found = await self._run(self._aio.artifacts.load(name, version))
            if found is None:
                return None
            part = _part_of(found)
            if artifact_util.is_artifact_ref(part):
                assert part.file_data is not None and part.file_data.file_uri is not None
                target = artifact_util.resolve_artifact_reference(
                    file_uri=part.file_data.file_uri,
                    app_name=app_name,
                    user_id=user_id,
                    session_id=session_id,
                    remaining_depth=depth,
                )
                depth -= 1
                app_name, user_id = target.app_name, target.user_id
                filename, session_id, version = target.filename, target.session_id, target.version
                continue
            if part == types.Part() or part == _REWIND_TOMBSTONE:
                return None
            return part

    # -- listing -----------------------------------------------------------------------------

    @override
    async def list_artifact_keys(
        self, *, app_name: str, user_id: str, session_id: str | None = None
    ) -> list[str]:
        artifact_util.validate_path_segment(app_name, "app_name")
        artifact_util.validate_path_segment(user_id, "user_id")
        scopes = [self._prefix(app_name, user_id, None)]
        if session_id is not None:
            artifact_util.validate_path_segment(session_id, "session_id")
            scopes.append(self._prefix(app_name, user_id, session_id))
        artifacts = self._aio.artifacts

        async def names() -> list[list[str]]:
            return list(await asyncio.gather(*(artifacts.list(p) for p in scopes)))

        found = await self._run(names())
        keys = {n[len(p) :] for p, page in zip(scopes, found, strict=True) for n in page}
        return sorted(keys)

    @override
    async def list_versions(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None = None,
    ) -> list[int]:
        name = self._name(app_name, user_id, filename, session_id)
        return await self._run(self._aio.artifacts.versions(name))

    @override
    async def list_artifact_versions(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None = None,
    ) -> list[ArtifactVersion]:
        name = self._name(app_name, user_id, filename, session_id)
        infos = await self._run(self._aio.artifacts.versions_info(name))
        return [self._version(app_name, user_id, filename, session_id, i) for i in infos]

    @override
    async def get_artifact_version(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None = None,
        version: int | None = None,
    ) -> ArtifactVersion | None:
        name = self._name(app_name, user_id, filename, session_id)
        if not _is_version(version):
            return None
        info = await self._run(self._aio.artifacts.info(name, version))
        if info is None:
            return None
        return self._version(app_name, user_id, filename, session_id, info)

    def _version(
        self,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None,
        info: ArtifactInfo,
    ) -> ArtifactVersion:
        meta = info.metadata
        adk = meta.get(META) if isinstance(meta, dict) else None
        if isinstance(adk, dict):  # saved by this service
            custom = meta.get(CUSTOM)
            mime = adk.get("mime")
        else:  # saved with store.artifacts.save: its metadata is the custom metadata
            custom, mime = meta, info.mime_type
        return ArtifactVersion(
            version=info.version,
            canonical_uri=self._uri(app_name, user_id, filename, session_id, info.version),
            custom_metadata=dict(custom) if isinstance(custom, dict) else {},
            create_time=info.created_at.timestamp(),
            mime_type=mime if isinstance(mime, str) else None,
        )

    # -- deleting ----------------------------------------------------------------------------

    @override
    async def delete_artifact(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None = None,
    ) -> None:
        name = self._name(app_name, user_id, filename, session_id)
        await self._run(self._aio.artifacts.delete(name))


def _is_version(version: object) -> bool:
    """None (the latest) or a version number; anything else finds nothing (as ADK's
    in-memory service: a negative version is not found)."""
    if version is None:
        return True
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputValidationError(f"version must be an int or None, not {version!r}")
    return version >= 0


def _part_of(found: Artifact) -> types.Part:
    """The ``types.Part`` a loaded version holds."""
    meta = found.metadata
    adk = meta.get(META) if isinstance(meta, dict) else None
    if not isinstance(adk, dict) or not isinstance(adk.get("part"), dict):
        # saved with store.artifacts.save: an inline blob of its data
        return types.Part(inline_data=types.Blob(mime_type=found.mime_type, data=found.data))
    part = types.Part.model_validate(adk["part"])
    kind = adk.get("kind")
    if kind == _INLINE:
        if part.inline_data is None:
            part.inline_data = types.Blob()
        part.inline_data.data = found.data
    elif kind == _TEXT:
        part.text = found.data.decode("utf-8")
    return part


__all__ = ["KVStoreArtifactService"]
