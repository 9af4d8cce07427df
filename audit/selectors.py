"""Reads of the AI-decision domain."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from veridict_verify.formats import format_time

from audit.models import AISystem, Decision
from timestamping.models import Entry


def received_text(entry: Entry) -> str:
    return format_time(entry.received_at)


def decisions_of(*, system: AISystem) -> QuerySet[Decision]:
    return (
        Decision.objects.filter(system=system)
        .select_related("entry", "model_version", "supersedes__entry")
        .prefetch_related("outcomes__entry")
    )


def decision_of(*, system: AISystem, decision_id: str) -> Decision | None:
    """One of the system's decisions by its entry id; None for another system's or a bad id."""
    try:
        return decisions_of(system=system).filter(entry__uuid=decision_id).first()
    except ValidationError:
        return None


def decision_by_token(*, token: str) -> Decision | None:
    return (
        Decision.objects.select_related("entry", "model_version", "system", "subject")
        .filter(subject_token=token)
        .first()
    )
