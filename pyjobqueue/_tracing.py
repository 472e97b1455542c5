"""The seam between the client and OpenTelemetry: a submit opens a span only while the
application has imported OpenTelemetry (see `pyjobqueue.contrib.opentelemetry`)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def submit_span(
    queue_name: str, kind: str | None, metadata: dict[str, Any], count: int = 1
) -> Iterator[dict[str, Any]]:
    """Around a submit: the metadata to store (with the submit span's trace context
    when OpenTelemetry is in use, else `metadata` itself)."""
    if "opentelemetry.trace" not in sys.modules:
        yield metadata
        return
    try:
        from .contrib import opentelemetry
    except ImportError:  # only part of OpenTelemetry is installed
        yield metadata
        return
    with opentelemetry.submit_span(queue_name, kind, metadata, count) as traced:
        yield traced
