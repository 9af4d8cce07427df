"""Prometheus metrics of the log, computed from the database at each scrape (web processes are
many and short-lived, so none of them can hold counters)."""

from __future__ import annotations

import hmac
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Sum
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from timestamping.anchor_backends import BUILTIN, backends_configured
from timestamping.models import Anchor, AnchorJob, Batch, Entry

log = structlog.get_logger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The last seal's figures, shared by every process through the cache (Redis, or the database).
LAST_SEAL_KEY = "veridict:timestamping:last_seal"


# --- what the seal task records ---------------------------------------------------------------


def seal_recorded(*, batch: Batch | None, seconds: float) -> None:
    """Keeps the duration of the last seal that made a batch (beat's polls that find nothing
    pending say nothing about sealing); losing it (cache down) loses only that figure."""
    if batch is None:
        return
    figures = {
        "seconds": seconds,
        "entries": batch.tree_size - batch.prev_tree_size,
        "batch": batch.number,
        "at": time.time(),
    }
    try:
        cache.set(LAST_SEAL_KEY, figures, timeout=None)
    except Exception:  # metrics must never fail a seal
        log.warning("seal_figures_not_kept", exc_info=True)


def pending_oldest(*, latest: Batch | None = None) -> datetime | None:
    """received_at of the oldest entry not sealed yet, or None."""
    latest = latest if latest is not None else Batch.objects.order_by("-number").first()
    return (
        Entry.objects.filter(seq__gt=latest.last_seq if latest else 0)
        .order_by("seq")
        .values_list("received_at", flat=True)
        .first()
    )


def mmd_check(*, now: datetime | None = None) -> float | None:
    """Logs a warning when the oldest pending entry has waited longer than the maximum merge
    delay its SET promised; returns how long it has waited (None: nothing pending)."""
    now = now or timezone.now()
    oldest = pending_oldest()
    if oldest is None:
        return None
    age = (now - oldest).total_seconds()
    if age > settings.MMD_SECONDS:
        log.warning(
            "mmd_exceeded",
            oldest_pending_age_seconds=round(age, 3),
            mmd_seconds=settings.MMD_SECONDS,
        )
    return age


# --- the exposition ---------------------------------------------------------------------------


@dataclass
class Metric:
    name: str
    kind: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((labels, value))


def _single(name: str, kind: str, help_text: str, value: float) -> Metric:
    metric = Metric(name, kind, help_text)
    metric.add(value)
    return metric


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def metrics_render(metrics: list[Metric]) -> str:
    """Prometheus text exposition format 0.0.4."""
    lines = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {metric.help}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for labels, value in metric.samples:
            rendered = ",".join(f'{key}="{_label(text)}"' for key, text in labels.items())
            lines.append(
                f"{metric.name}{{{rendered}}} {_number(value)}"
                if rendered
                else f"{metric.name} {_number(value)}"
            )
    return "\n".join(lines) + "\n"


def metrics_collect(*, now: datetime | None = None) -> list[Metric]:
    """Reads every figure from the database (and the last seal's from the cache)."""
    now = now or timezone.now()
    latest = Batch.objects.order_by("-number").first()
    last_seq = latest.last_seq if latest else 0
    pending = Entry.objects.filter(seq__gt=last_seq)
    oldest = pending_oldest(latest=latest)
    mmd_cutoff = now - timedelta(seconds=settings.MMD_SECONDS)

    metrics = [
        _single(
            "veridict_entries_pending",
            "gauge",
            "Entries received and not sealed yet.",
            pending.count(),
        ),
        _single(
            "veridict_entries_pending_oldest_age_seconds",
            "gauge",
            "How long the oldest pending entry has waited (0 when none waits).",
            max(0.0, (now - oldest).total_seconds()) if oldest else 0,
        ),
        _single(
            "veridict_entries_over_mmd",
            "gauge",
            "Pending entries older than the maximum merge delay their SET promised: alert above 0.",
            pending.filter(received_at__lt=mmd_cutoff).count() if oldest else 0,
        ),
        _single(
            "veridict_mmd_seconds",
            "gauge",
            "The maximum merge delay every SET promises.",
            settings.MMD_SECONDS,
        ),
        _single(
            "veridict_batches_sealed_total",
            "counter",
            "Batches sealed since the log began.",
            latest.number if latest else 0,
        ),
        _single(
            "veridict_tree_size",
            "gauge",
            "Leaves in the log's Merkle tree.",
            latest.tree_size if latest else 0,
        ),
    ]
    if latest is not None:
        metrics.append(
            _single(
                "veridict_last_batch_sealed_timestamp_seconds",
                "gauge",
                "When the latest batch was sealed (Unix time).",
                latest.sealed_at.timestamp(),
            )
        )

    try:
        last_seal: dict[str, Any] | None = cache.get(LAST_SEAL_KEY)
    except Exception:  # the cache is down: the other figures still help
        last_seal = None
    if last_seal:
        metrics += [
            _single(
                "veridict_last_seal_duration_seconds",
                "gauge",
                "Seconds the last seal that made a batch took (the cache keeps it).",
                last_seal["seconds"],
            ),
            _single(
                "veridict_last_seal_entries",
                "gauge",
                "Entries the last seal that made a batch sealed.",
                last_seal["entries"],
            ),
        ]

    metrics += _anchor_metrics(latest, now)
    return metrics


def _anchor_metrics(latest: Batch | None, now: datetime) -> list[Metric]:
    lag = Metric(
        "veridict_anchor_lag_seconds",
        "gauge",
        "Now minus the sealing time of the newest batch this backend anchored.",
    )
    behind = Metric(
        "veridict_anchor_batches_behind",
        "gauge",
        "Batches sealed after the newest one this backend anchored (0: up to date).",
    )
    failures = Metric(
        "veridict_anchor_failures_total", "counter", "Failed anchoring tries, per backend."
    )
    jobs = Metric(
        "veridict_anchor_jobs",
        "gauge",
        "Anchoring jobs not final yet, per backend and status.",
    )
    sources = [BUILTIN, *(b.name for b in backends_configured().values() if not b.retired)]
    failed_counts = dict(
        AnchorJob.objects.filter(failures__gt=0)
        .values("backend")
        .annotate(total=Sum("failures"))
        .values_list("backend", "total")
    )
    open_counts = {
        (backend, status): count
        for backend, status, count in AnchorJob.objects.filter(
            status__in=[
                AnchorJob.Status.PENDING,
                AnchorJob.Status.FAILED,
                AnchorJob.Status.ANCHORED,
            ]
        )
        .values("backend", "status")
        .annotate(count=Count("pk"))
        .values_list("backend", "status", "count")
    }
    for backend in sources:
        # Batch ids grow with batch numbers, and (backend, batch) is indexed by its constraint.
        newest = (
            Anchor.objects.filter(backend=backend, reorg__isnull=True)
            .order_by("-batch_id")
            .values_list("batch__number", "batch__sealed_at")
            .first()
        )
        if newest is not None:
            lag.add(max(0.0, (now - newest[1]).total_seconds()), backend=backend)
            behind.add((latest.number if latest else 0) - newest[0], backend=backend)
        failures.add(failed_counts.get(backend, 0), backend=backend)
        for status in (AnchorJob.Status.PENDING, AnchorJob.Status.FAILED):
            jobs.add(open_counts.get((backend, status), 0), backend=backend, status=status)
        if (backend, AnchorJob.Status.ANCHORED) in open_counts:
            jobs.add(
                open_counts[(backend, AnchorJob.Status.ANCHORED)],
                backend=backend,
                status=AnchorJob.Status.ANCHORED,
            )
    return [lag, behind, failures, jobs]


# --- the view ---------------------------------------------------------------------------------


class MetricsTokenPermission(BasePermission):
    message = "GET /metrics wants Authorization: Bearer <VERIDICT_METRICS_TOKEN>"

    def has_permission(self, request: Request, view: Any) -> bool:
        token = settings.METRICS_TOKEN
        if not token:
            return True
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


class MetricsView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [MetricsTokenPermission]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # Prometheus asks for text; the exposition is an HttpResponse and only errors are JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        summary="Prometheus metrics: pending entries, seals, anchor lag and failures",
        responses={(200, "text/plain"): OpenApiTypes.STR},
    )
    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(metrics_render(metrics_collect()), content_type=CONTENT_TYPE)
