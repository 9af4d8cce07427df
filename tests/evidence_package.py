"""Evidence packages for the tests of `veridict-audit`, made by the real exporter
(audit.services.evidence), over a range that may start after a given batch; tests edit the lines
to tamper with them and write them back with a fresh end line."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audit import vault
from audit.models import AISystem
from audit.services.evidence import EvidenceOpenings, evidence_span_lines
from timestamping.models import Batch
from timestamping.selectors import stream_range


def evidence_lines(*, system: AISystem, after_batch: int | None = None) -> Iterator[dict[str, Any]]:
    """The package's lines: the system log from the size it had after `after_batch` (its start,
    when None) to its latest size. The exporter bounds ranges by when batches were sealed, so the
    range starts at the sealing time of the batch after `after_batch`."""
    sealed_from = (
        Batch.objects.get(number=after_batch + 1).sealed_at if after_batch is not None else None
    )
    span = stream_range(
        stream=vault.system_stream(system_id=system.pk),
        sealed_from=sealed_from,
        sealed_before=None,
    )
    lines = evidence_span_lines(
        system=system, span=span, date_from=None, date_to=None, openings=EvidenceOpenings()
    )
    # Without the end line: evidence_package_write counts the lines it is given, edited or not.
    yield from (line for line in lines if line["type"] != "end")


def evidence_package_write(
    path: Path,
    *,
    system: AISystem | None = None,
    after_batch: int | None = None,
    lines: list | None = None,
) -> list[dict[str, Any]]:
    """Writes the package (or the given, edited, lines with a fresh end line); its lines."""
    if lines is None:
        assert system is not None
        lines = list(evidence_lines(system=system, after_batch=after_batch))
    body = lines
    body = [line for line in body if line["type"] != "end"]
    entries = [line for line in body if line["type"] == "entry"]
    end = {
        "type": "end",
        "entries": len(entries),
        "erased": sum(1 for line in entries if line.get("erased")),
        "lines": len(body),
    }
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for line in [*body, end]:
            handle.write(json.dumps(line) + "\n")
    return [*body, end]
