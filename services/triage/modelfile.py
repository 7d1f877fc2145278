"""The published classifier model: one file, written only by `cityops triage publish`, watched by every triage.

Why a watched file and not a model-published event on a topic: the model is a file anyway (a joblib pickle of
megabytes, over Kafka's default 1 MB record limit), so an event could only carry a path to it, and every
instance would then have to read the same file plus a topic that could announce it before it is visible, or
after it changed again. Watching the file leaves one source of truth and one writer: `publish` copies the
model next to the published path and renames it over it (atomic), so an instance sees the old model or the
new one, never half of one. What a topic would have added, an audit trail, the log has already: every
TicketClassified the model decided names its version (a digest of the file's bytes), so the log shows which
model decided which ticket and from when. Several hosts share the file through their state volume.

Checks are cheap (one `stat` at most every ``check_every_s``, before a batch is classified); a file that
changed is hashed and loaded, and swapped in only if it loads; a broken one is logged once and the running
model stays.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

VERSION_CHARS = 12


def model_version(path: Path) -> str:
    """A model's version: the start of the SHA-256 of its bytes (the same file on every host, the same version)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:VERSION_CHARS]


def publish_model(source: Path, target: Path, load: Callable[[Path], Any]) -> str:
    """Copy ``source`` to ``target`` atomically, after checking that it loads; returns its version."""
    load(source)  # a file triage could not read is refused here, not discovered by every instance
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)  # readers see the old file or the new one, never half of one
    return model_version(target)


@dataclass(frozen=True)
class _Signature:
    inode: int
    size: int
    mtime_ns: int


def _signature(path: Path) -> _Signature | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return _Signature(st.st_ino, st.st_size, st.st_mtime_ns)


class WatchedModel:
    """The classifier from ``path``, reloaded when the file changes; ``fallback`` while there is none (unless
    ``required``: then the file must exist and load at start)."""

    def __init__(self, path: Path, load: Callable[[Path], Any], fallback: Callable[[], tuple[Any, str]],
                 check_every_s: float = 2.0, clock: Callable[[], float] = time.monotonic, required: bool = False) -> None:
        self.path, self._load, self._fallback = path, load, fallback
        self.check_every_s, self._clock = check_every_s, clock
        self._seen: _Signature | None = None
        self._checked_at = clock()  # the look at start counts as the first check
        self.classifier: Any = None
        self.version: str | None = None
        signature = _signature(path)
        if required and signature is None:
            raise FileNotFoundError(f"model file {path} does not exist")
        if not self._reload(signature, strict=required):
            self.classifier, self.version = fallback()

    def refresh(self) -> bool:
        """Load the file again if it changed since the last look; True when another model is now in use."""
        now = self._clock()
        if now - self._checked_at < self.check_every_s:
            return False
        self._checked_at = now
        signature = _signature(self.path)
        if signature is None or signature == self._seen:
            return False
        return self._reload(signature)

    def _reload(self, signature: _Signature | None, strict: bool = False) -> bool:
        if signature is None:
            return False
        self._seen = signature  # even if it fails to load: a broken file is reported once, not every batch
        try:
            version = model_version(self.path)
            if version == self.version:
                return False  # touched or copied again, same bytes
            classifier = self._load(self.path)
        except Exception as exc:
            if strict:  # a model the operator named at start must load: starting on another would hide it
                raise
            log.warning("model_reload_failed", path=str(self.path), error=repr(exc), kept=self.version)
            return False
        if _signature(self.path) != signature:
            self._seen = None  # replaced while we read it: look again next time
            return False
        previous, self.classifier, self.version = self.version, classifier, version
        log.info("model_loaded", path=str(self.path), version=version, previous=previous,
                 trained_on=getattr(classifier, "metadata", {}).get("trained_on"))
        return True
