"""Celery tasks of the AI-decision domain: thin wrappers around services, safe to run twice."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from audit.services.retention import retention_sweep


@shared_task(name="audit.retention_sweep")
def retention_sweep_task() -> dict[str, int | bool]:
    """Erases what is past retention; runs again at once while a backlog is left and it gains."""
    sweep = retention_sweep()
    # Each erasure committed on its own, so the next run starts where this one stopped; only
    # when this one erased something, so items that keep failing cannot loop it forever.
    if sweep.more and (sweep.subjects_erased or sweep.files_erased):
        retention_sweep_task.delay()
    return asdict(sweep)
