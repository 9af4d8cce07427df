"""Oversight at ingestion, shared by the single and the bulk endpoint: the policy verdict and
the owner go into the decision's leaf; the review item and the attribution rows follow it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model

from audit import vault
from audit.models import AISystem, Decision, ModelVersion
from review.models import DecisionOwner, PolicySet, ReviewItem, ReviewSettings
from review.policy import Verdict, decision_facts, policy_evaluate
from review.services.common import DEFAULT_DEADLINE_HOURS, actor_pseudonym, due_at


class PolicyRejected(Exception):
    """A rule of the system's policy rejects the decision: nothing is recorded (answer 422)."""

    def __init__(self, verdict: Verdict, policy: PolicySet) -> None:
        super().__init__(f"rejected by {verdict.rule_label} of policy version {policy.version}")
        self.verdict = verdict
        self.policy = policy


@dataclass
class IntakeContext:
    """A system's review settings and current policy, read once per request."""

    system: AISystem
    settings: ReviewSettings | None
    users: dict[str, Any] = field(default_factory=dict)

    @property
    def policy(self) -> PolicySet | None:
        return self.settings.current_policy if self.settings else None

    def users_load(self, names: Iterable[str]) -> None:
        """The known users among these owner names, in one query (bulk loads them all)."""
        wanted = sorted(set(names) - set(self.users))
        if not wanted:
            return
        found = {
            user.username: user for user in get_user_model().objects.filter(username__in=wanted)
        }
        self.users.update({name: found.get(name) for name in wanted})


@dataclass
class Intake:
    """What oversight decided for one decision request, before its entry exists."""

    policy: PolicySet | None
    verdict: Verdict | None
    owner_user: Any = None
    owner_name: str = ""
    owner_source: str | None = None

    def envelope_fields(self) -> dict[str, Any]:
        """Added to the decision's leaf: the policy version applied, and the default owner when
        the record named none (a named owner is in the leaf already, as a commitment)."""
        attribution = None
        if self.owner_source == DecisionOwner.Source.SYSTEM_DEFAULT:
            attribution = {"source": "system_default", "owner": actor_pseudonym(self.owner_user)}
        policy = None
        if self.policy is not None:
            policy = {"version": self.policy.version, "entry": str(self.policy.entry.uuid)}
        return {"policy": policy, "attribution": attribution}


def intake_context(*, system: AISystem) -> IntakeContext:
    review_settings = (
        ReviewSettings.objects.filter(system=system)
        .select_related("current_policy__entry", "default_owner")
        .first()
    )
    return IntakeContext(system=system, settings=review_settings)


def intake_evaluate(
    *, context: IntakeContext, data: dict[str, Any], model_version: ModelVersion
) -> Intake:
    """The policy verdict and the owner of a decision request; PolicyRejected if a rule rejects.

    The rules see the request in memory (inputs included) and nothing of it is kept.
    """
    policy = context.policy
    verdict = None
    if policy is not None:
        facts = decision_facts(data, model_declared=model_version.declared)
        verdict = policy_evaluate(policy.rules, facts)
        if verdict is not None and verdict.action == "reject":
            raise PolicyRejected(verdict, policy)
    intake = Intake(policy=policy, verdict=verdict)
    owner = data.get("owner")
    if owner:
        context.users_load([owner])
        intake.owner_user = context.users.get(owner)
        intake.owner_name = "" if intake.owner_user else owner
        intake.owner_source = DecisionOwner.Source.RECORD
    elif context.settings is not None and context.settings.default_owner is not None:
        intake.owner_user = context.settings.default_owner
        intake.owner_source = DecisionOwner.Source.SYSTEM_DEFAULT
    return intake


def sampled(*, entry_uuid: Any, rate: float) -> bool:
    """Whether the decision is in the random sample: a keyed hash of its entry id, so the draw
    is reproducible by the operator but not foreseeable by the AI system."""
    if rate <= 0:
        return False
    digest = vault.keyed_digest(purpose=b"veridict/review-sample/v1", data=entry_uuid.bytes)
    return int.from_bytes(digest[:8], "big") < rate * 2**64


def _queue_reason(
    context: IntakeContext, decision: Decision, intake: Intake
) -> tuple[str, str] | None:
    if intake.verdict is not None:
        detail = f"{intake.verdict.rule_label} of policy version {intake.policy.version}"  # type: ignore[union-attr]
        return ReviewItem.Reason.POLICY, detail
    review_settings = context.settings
    if review_settings is None:
        return None
    below = review_settings.low_confidence_below
    if below is not None and decision.confidence is not None and decision.confidence < below:
        return ReviewItem.Reason.LOW_CONFIDENCE, f"confidence below {below:g}"
    if sampled(entry_uuid=decision.entry.uuid, rate=review_settings.sampling_rate):
        return ReviewItem.Reason.SAMPLE, f"sampling rate {review_settings.sampling_rate:g}"
    return None


def intake_store(*, context: IntakeContext, rows: Sequence[tuple[Decision, Intake]]) -> None:
    """The attribution and review-queue rows of decisions just inserted, in the caller's
    transaction: two INSERTs at most, whatever the number of decisions."""
    owners: list[DecisionOwner] = []
    items: list[ReviewItem] = []
    hours = context.settings.review_deadline_hours if context.settings else DEFAULT_DEADLINE_HOURS
    for decision, intake in rows:
        if intake.owner_source is not None:
            owners.append(
                DecisionOwner(
                    decision=decision,
                    user=intake.owner_user,
                    name=intake.owner_name,
                    source=intake.owner_source,
                    entry=decision.entry,
                )
            )
        queued = _queue_reason(context, decision, intake)
        if queued is None:
            # Known to have none: the answer asks, and need not query for it.
            Decision.review_item.related.set_cached_value(decision, None)
            continue
        item = ReviewItem(
            decision=decision, reason=queued[0], reason_detail=queued[1], due_at=due_at(hours=hours)
        )
        items.append(item)
        Decision.review_item.related.set_cached_value(decision, item)
    if owners:
        DecisionOwner.objects.bulk_create(owners)
    if items:
        ReviewItem.objects.bulk_create(items)
