"""Writes an evidence package (docs/evidence.md, `veridict.evidence/v1`) of one AI system from the
database: a small stand-in, written from the spec, for the tests of `veridict-audit` until the
real exporter (`evidence_export`) lands; those tests then build their packages with it."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from veridict_verify import merkle
from veridict_verify.formats import format_time

from audit import vault
from audit.models import AISystem, Decision
from audit.services.subjects import decision_erased, decision_personal_data, subject_key
from review.models import ReviewAction, ReviewItem
from timestamping import selectors, tree
from timestamping.models import Entry, StreamHead

DECISION_OPENINGS = ("protected_attributes", "owner", "client_decision_id")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _review_statement(decision: Decision) -> dict[str, Any] | None:
    item = ReviewItem.objects.filter(decision=decision).first()
    if item is None:
        return None
    return {
        "reason": item.reason,
        "queued_at": format_time(item.created_at),
        "due_at": format_time(item.due_at),
        "closed_at": format_time(item.closed_at) if item.closed_at else None,
        "closed_by": item.closed_by or None,
    }


def _entry_line(entry: Entry, index: int, batch: int) -> dict[str, Any]:
    line: dict[str, Any] = {
        "type": "entry",
        "index": index,
        "batch": batch,
        "canonical_b64": _b64(bytes(entry.canonical)),
        "openings": {},
    }
    decision = Decision.objects.filter(entry=entry).select_related("subject").first()
    if decision is not None:
        personal = None if decision_erased(decision) else decision_personal_data(decision)
        if personal is None:
            line["erased"] = True
        else:
            line["openings"] = {
                name: {"salt_b64": personal["salts"][name], "value": personal["fields"][name]}
                for name in DECISION_OPENINGS
                if name in personal["salts"]
            }
        line["review"] = _review_statement(decision)
        return line
    action = ReviewAction.objects.filter(entry=entry).select_related("decision__subject").first()
    if action is not None and entry.kind == "review" and action.sealed_text is not None:
        try:
            sealed = vault.open_json(
                subject_key(action.decision.subject),
                bytes(action.sealed_text),
                context=f"review-text:{entry.uuid}".encode(),
            )
        except vault.VaultError:
            return line
        line["openings"] = {"text": {"salt_b64": sealed["salt"], "value": sealed["text"]}}
    return line


def evidence_lines(*, system: AISystem, after_batch: int | None = None) -> Iterator[dict[str, Any]]:
    """The package's lines: the system log from the size it had after `after_batch` (its start,
    when None) to its latest size."""
    stream = vault.system_stream(system_id=system.pk)
    heads = list(
        StreamHead.objects.filter(stream=stream).select_related("batch").order_by("batch__number")
    )
    start = next((h for h in reversed(heads) if h.batch.number <= (after_batch or 0)), None)
    size_a = start.size if start else 0
    in_range = [h for h in heads if h.batch.number > (after_batch or 0)]
    end = in_range[-1] if in_range else start
    assert end is not None, "the system log is empty"
    border = tree.TreeView(stream=stream).compute(
        lambda range_hash: merkle.compact_range(size_a, range_hash)
    )
    yield {
        "type": "header",
        "version": "veridict.evidence/v1",
        "origin": settings.LOG_ORIGIN,
        "system": {"slug": system.slug, "name": system.name, "stream": stream},
        "range": {"from": None, "to": None},
        "start": {
            "batch": start.batch.number if start else 0,
            "size": size_a,
            "compact_range": [node.hex() for node in border],
        },
        "end": {"batch": end.batch.number, "size": end.size},
        "openings": {"explanation": False, "inputs": False},
        "created_at": format_time(end.batch.sealed_at),
    }
    for head in ([start] if start else []) + in_range:
        batch = head.batch
        yield {
            "type": "batch",
            "number": batch.number,
            "header_b64": _b64(bytes(batch.header)),
            "header_hash": bytes(batch.header_hash).hex(),
            "checkpoint": batch.checkpoint,
            # The receipts' anchors of this batch (the first per source at or after it).
            "anchors": selectors._anchors(batch),  # noqa: SLF001 (replaced by the exporter)
        }
    index = size_a
    for head in in_range:
        batch = head.batch
        entries = Entry.objects.filter(
            stream=stream, seq__gte=batch.first_seq, seq__lte=batch.last_seq
        ).order_by("seq")
        for entry in entries:
            yield _entry_line(entry, index, batch.number)
            index += 1


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
