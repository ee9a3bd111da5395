"""Whole-object writes to Google Cloud Storage with gcsfs (runs in a worker thread).

Layout (``WFCRAWL_GCS_PREFIX`` may be empty)::

    gs://<bucket>/<prefix>/<workflow>/<execution>/<item type>/part-<instance>-<seq>.jsonl.gz
    gs://<bucket>/<prefix>/<workflow>/<execution>/_quarantine/<item type>/part-<instance>-<seq>.jsonl.gz
    gs://<bucket>/<prefix>/<workflow>/<execution>/_pages/part-<instance>-<seq>.jsonl.gz
    gs://<bucket>/<prefix>/<workflow>/<execution>/_instances/<instance>.json

``seq`` counts from 000000 per instance and folder. Every object is uploaded
in one request from memory: GCS makes an object visible only once its upload
completed, so readers see whole objects or none. A retried upload rewrites the
same name with the same bytes (gzip ``mtime`` is 0), so retries never duplicate.

gcsfs is the ``gcs`` extra, imported lazily. We use ``gcsfs.core.GCSFileSystem``:
the experimental zonal/HNS class that ``gcsfs.GCSFileSystem`` may resolve to
probes a gRPC endpoint first, which stalls 60 s against emulators.
"""

from __future__ import annotations

import gzip
import json
import re
from typing import Any

from wfcrawl.exceptions import ConfigurationError, first_line

#: Bucket names as GCS accepts them (dotted names up to 222 characters).
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def segment(name: str) -> str:
    """One safe path segment (item types from non-workflow spiders may be anything)."""
    cleaned = _UNSAFE.sub("_", name).strip(".")
    return cleaned or "_untyped"


def execution_folder(prefix: str, workflow: str, execution_id: str) -> str:
    parts = [p for p in prefix.strip("/").split("/") if p] + [segment(workflow), segment(execution_id)]
    return "/".join(parts)


def part_name(instance: str, seq: int) -> str:
    return f"part-{instance}-{seq:06d}.jsonl.gz"


def compress(lines: list[bytes]) -> bytes:
    # mtime=0: the same lines always give the same bytes (idempotent retries).
    return gzip.compress(b"".join(lines), compresslevel=6, mtime=0)


class GcsObjectWriter:
    """Uploads whole objects to one bucket."""

    def __init__(self, bucket: str, *, endpoint: str = "", token: str = "", project: str = "") -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        self.token = token
        self.project = project
        self._fs: Any = None

    def _filesystem(self) -> Any:
        if self._fs is None:
            try:
                from gcsfs.core import GCSFileSystem
            except ImportError:  # pragma: no cover - depends on the installation
                raise ConfigurationError("GCS_BUCKET is set but gcsfs is not installed: pip install 'wfcrawl[gcs]'") from None
            kwargs: dict[str, Any] = {"skip_instance_cache": True}
            if self.endpoint:
                kwargs["endpoint_url"] = self.endpoint
            if self.token:
                kwargs["token"] = self.token
            if self.project:
                kwargs["project"] = self.project
            self._fs = GCSFileSystem(**kwargs)
        return self._fs

    def open(self, marker_path: str, marker: dict[str, Any]) -> None:
        """Check that the bucket exists and is writable (start of a crawl).

        Writes this instance's marker object: which instances wrote an
        execution, and proof that writing works before any item is at stake.
        Only object writes are needed (no bucket metadata permission).
        """
        where = f"gs://{self.bucket}" + (f" at {self.endpoint}" if self.endpoint else "")
        try:
            self._filesystem().pipe_file(
                f"{self.bucket}/{marker_path}", json.dumps(marker, indent=1).encode(), content_type="application/json"
            )
        except FileNotFoundError:
            raise ConfigurationError(f"GCS bucket {where} does not exist (GCS_BUCKET)") from None
        except ConfigurationError:
            raise
        except Exception as exc:
            raise ConfigurationError(f"cannot write to GCS bucket {where} (GCS_BUCKET): {first_line(exc)}") from None

    def put(self, path: str, lines: list[bytes], metadata: dict[str, str]) -> int:
        """Upload the gzip of ``lines`` as ``path``; returns the compressed size."""
        data = compress(lines)
        self._filesystem().pipe_file(
            f"{self.bucket}/{path}", data, content_type="application/gzip", metadata=metadata
        )
        return len(data)
