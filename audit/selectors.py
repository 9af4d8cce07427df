"""Reads of the AI-decision domain."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from veridict_verify.formats import format_time

from audit import vault
from audit.models import AISystem, Decision
from timestamping.models import Entry


def received_text(entry: Entry) -> str:
    return format_time(entry.received_at)


def decisions_of(*, system: AISystem) -> QuerySet[Decision]:
    return (
        Decision.objects.filter(system=system)
        # The subject: the client decision id is read with its key.
        .select_related("entry", "model_version", "subject", "supersedes__entry")
        .prefetch_related("outcomes__entry")
    )


def decisions_by_client_id(
    *, system: AISystem, client_ids: list[str] | set[str]
) -> QuerySet[Decision]:
    """The system's decisions with these client decision ids (found by their keyed hashes);
    a decision whose subject was erased is found by none."""
    lookups = [
        vault.client_id_lookup(system_id=system.pk, client_decision_id=client_id)
        for client_id in client_ids
    ]
    return Decision.objects.filter(system=system, client_id_lookup__in=lookups)


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


def decisions_by_client_id_search(*, queryset: QuerySet, term: str, decision_path: str) -> QuerySet:
    """Rows of the queryset whose decision (at `decision_path`, "" for decisions) has this exact
    client decision id. Its keyed hash is per system: the term is hashed for each system the
    rows belong to."""
    term = term.strip()
    if not term:
        return queryset
    system_field = f"{decision_path}system_id"
    match = Q(pk__in=[])
    for system_id in queryset.values_list(system_field, flat=True).distinct().order_by():
        lookup = vault.client_id_lookup(system_id=system_id, client_decision_id=term)
        match |= Q(**{system_field: system_id, f"{decision_path}client_id_lookup": lookup})
    return queryset.filter(match)
