"""Publishing a system's guardrail rules: each version a ledger entry of kind "policy"."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max

from audit import vault
from audit.models import AISystem
from review.errors import NotAllowed
from review.models import PolicySet, ReviewSettings
from review.permissions import user_may_review
from review.policy import PolicyError, policy_validate
from review.services.common import actor_pseudonym
from timestamping.services import entry_append

__all__ = ["PolicyError", "policy_set_publish"]


def policy_set_publish(*, system: AISystem, rules: Any, by: Any) -> PolicySet:
    """Validates the rules (PolicyError names the first problem) and publishes them as the
    system's next version; decisions recorded after the commit are evaluated against it."""
    if by is not None and not user_may_review(
        user=by, system=system, permission="review.publish_policy"
    ):
        raise NotAllowed(f"you may not publish policies of {system.name}")
    rules = policy_validate(rules)
    with transaction.atomic(durable=True):
        # The settings row lock serialises publications: versions are numbered without gaps.
        review_settings, _ = ReviewSettings.objects.get_or_create(system=system)
        review_settings = ReviewSettings.objects.select_for_update().get(pk=review_settings.pk)
        latest = PolicySet.objects.filter(system=system).aggregate(latest=Max("version"))
        version = (latest["latest"] or 0) + 1
        previous = review_settings.current_policy
        entry, _ = entry_append(
            kind="policy",
            stream=vault.system_stream(system_id=system.pk),
            envelope={
                "type": "policy",
                "system": system.slug,
                "version": version,
                "rules": rules,
                "previous": str(previous.entry.uuid) if previous else None,
                "published_by": actor_pseudonym(by) if by is not None else None,
            },
        )
        policy = PolicySet.objects.create(
            system=system,
            version=version,
            rules=rules,
            entry=entry,
            published_by=by,
            published_at=entry.received_at,
        )
        review_settings.current_policy = policy
        review_settings.save(update_fields=["current_policy"])
        return policy
