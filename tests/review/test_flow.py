"""The review workflow: who may do what in which state, and what each step leaves in the ledger."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.utils import timezone
from veridict_verify.receipt import receipt_verify

from bias.models import FinalOutcome
from review.models import DecisionOwner, ReviewAction, ReviewItem
from review.selectors import (
    decision_owner,
    decisions_unattributed,
    review_action_text,
    review_chain,
)
from review.services import (
    FourEyesRequired,
    InvalidOutput,
    NotAllowed,
    RationaleRequired,
    WrongState,
    WrongUser,
    decision_attribute,
    review_approve,
    review_claim,
    review_confirm,
    review_escalate,
    review_item_open,
    review_override,
    review_reject_override,
)
from timestamping import keys
from timestamping.models import Entry
from timestamping.selectors import receipt_get

pytestmark = pytest.mark.django_db

Status = ReviewItem.Status


def leaf_body(action: ReviewAction) -> dict:
    return json.loads(bytes(action.entry.canonical))["body"]


def test_a_claimed_review_is_confirmed_by_its_holder_and_closed(queued, alice):
    item = review_claim(item=queued(), reviewer=alice)
    assert (item.status, item.claimed_by) == (Status.CLAIMED, alice)
    item = review_confirm(item=item, reviewer=alice, rationale="The ratio is well documented.")
    item.refresh_from_db()
    assert item.status == Status.CLOSED
    assert item.result == ReviewItem.Result.CONFIRMED
    assert item.final_output == item.decision.output
    assert item.closed_at is not None
    (action,) = item.actions.all()
    assert action.kind == ReviewAction.Kind.CONFIRM


def test_only_the_holder_may_decide_a_claimed_review(queued, alice, bob):
    item = review_claim(item=queued(), reviewer=alice)
    with pytest.raises(WrongUser):
        review_confirm(item=item, reviewer=bob, rationale="looks fine")
    with pytest.raises(WrongState):  # bob cannot take it over either
        review_claim(item=item, reviewer=bob)


def test_an_unclaimed_review_cannot_be_decided(queued, alice):
    with pytest.raises(WrongState):
        review_confirm(item=queued(), reviewer=alice, rationale="fine")


def test_a_closed_review_cannot_be_claimed_again(queued, alice):
    item = review_claim(item=queued(), reviewer=alice)
    review_confirm(item=item, reviewer=alice, rationale="fine")
    with pytest.raises(WrongState):
        review_claim(item=item, reviewer=alice)


def test_a_reviewer_of_another_system_is_refused(queued, outsider):
    with pytest.raises(NotAllowed):
        review_claim(item=queued(), reviewer=outsider)


def test_a_compliance_officer_may_act_on_every_system(queued, compliance):
    item = review_claim(item=queued(), reviewer=compliance)
    assert item.claimed_by == compliance


def test_a_user_without_the_permission_is_refused_even_if_assigned(queued, settings_of):
    from tests.review.conftest import staff_user

    viewer = staff_user("vera")
    settings_of.reviewers.add(viewer)
    with pytest.raises(NotAllowed):
        review_claim(item=queued(), reviewer=viewer)


@pytest.mark.parametrize("rationale", ["", "   ", "x" * 10_001])
def test_a_rationale_is_required(queued, alice, rationale):
    item = review_claim(item=queued(), reviewer=alice)
    with pytest.raises(RationaleRequired):
        review_confirm(item=item, reviewer=alice, rationale=rationale)
    item.refresh_from_db()
    assert item.status == Status.CLAIMED
    assert not ReviewAction.objects.exists()


def test_an_override_without_four_eyes_is_final_at_once(queued, alice):
    item = review_claim(item=queued(), reviewer=alice)
    item = review_override(
        item=item, reviewer=alice, rationale="Income was misread.", output={"label": "approve"}
    )
    item.refresh_from_db()
    assert (item.status, item.result) == (Status.CLOSED, ReviewItem.Result.OVERRIDDEN)
    assert item.final_output == {"label": "approve"}


@pytest.mark.parametrize(
    "output", [{}, {"label": "x", "colour": "red"}, "approve", {"value": True}]
)
def test_an_override_needs_a_valid_output(queued, alice, output):
    item = review_claim(item=queued(), reviewer=alice)
    with pytest.raises(InvalidOutput):
        review_override(item=item, reviewer=alice, rationale="r", output=output)


def test_four_eyes_an_override_waits_for_another_reviewer(queued, alice, bob, settings_of):
    settings_of.four_eyes = True
    settings_of.save()
    item = review_claim(item=queued(), reviewer=alice)
    item = review_override(
        item=item, reviewer=alice, rationale="wrong", output={"label": "approve"}
    )
    assert item.status == Status.AWAITING_APPROVAL
    assert item.final_output is None and item.result is None
    with pytest.raises(FourEyesRequired):
        review_approve(item=item, approver=alice, rationale="I agree with myself")
    item = review_approve(item=item, approver=bob, rationale="Agreed: income was misread.")
    item.refresh_from_db()
    assert (item.status, item.result) == (Status.CLOSED, ReviewItem.Result.OVERRIDDEN)
    assert item.final_output == {"label": "approve"}
    kinds = list(item.actions.values_list("kind", flat=True))
    assert kinds == ["override", "approve"]
    approval = item.actions.get(kind="approve")
    assert leaf_body(approval)["override"] == str(item.actions.get(kind="override").entry.uuid)


def test_a_rejected_override_goes_back_to_the_queue(queued, alice, bob, settings_of):
    settings_of.four_eyes = True
    settings_of.save()
    item = review_claim(item=queued(), reviewer=alice)
    item = review_override(
        item=item, reviewer=alice, rationale="wrong", output={"label": "approve"}
    )
    item = review_reject_override(item=item, approver=bob, rationale="The ratio is right.")
    item.refresh_from_db()
    assert item.status == Status.OPEN
    assert item.claimed_by is None and item.proposed_output is None and item.result is None
    with pytest.raises(WrongState):
        review_approve(item=item, approver=bob, rationale="too late")


def test_approval_needs_the_approve_permission(queued, alice, settings_of):
    from tests.review.conftest import staff_user

    settings_of.four_eyes = True
    settings_of.save()
    junior = staff_user("june", "review_decision")
    settings_of.reviewers.add(junior)
    item = review_claim(item=queued(), reviewer=alice)
    item = review_override(
        item=item, reviewer=alice, rationale="wrong", output={"label": "approve"}
    )
    with pytest.raises(NotAllowed):
        review_approve(item=item, approver=junior, rationale="ok")


def test_an_escalated_review_is_taken_by_someone_else(queued, alice, bob):
    item = review_claim(item=queued(), reviewer=alice)
    item = review_escalate(item=item, reviewer=alice, rationale="Needs a senior officer.")
    assert (item.status, item.claimed_by) == (Status.ESCALATED, None)
    with pytest.raises(WrongUser):
        review_claim(item=item, reviewer=alice)
    assert review_claim(item=item, reviewer=bob).status == Status.CLAIMED


def test_time_spent_counts_from_when_the_reviewer_opened_the_item(queued, alice):
    item = review_claim(item=queued(), reviewer=alice)
    opened = timezone.now() - timedelta(seconds=95)
    item = review_confirm(item=item, reviewer=alice, rationale="fine", started_at=opened)
    assert 95 <= item.time_spent_seconds <= 105


def test_a_final_review_updates_the_bias_counts(queued, alice):
    item = review_claim(item=queued(), reviewer=alice)
    review_override(item=item, reviewer=alice, rationale="r", output={"label": "approve"})
    assert FinalOutcome.objects.get(decision=item.decision).label == "approve"


def test_review_entries_name_the_decision_and_no_person(queued, alice):
    item = review_claim(item=queued(), reviewer=alice)
    rationale = "Applicant applicant-88231 explained the gap in income."
    review_override(item=item, reviewer=alice, rationale=rationale, output={"label": "approve"})
    action = item.actions.get()
    canonical = bytes(action.entry.canonical).decode()
    assert "alice" not in canonical and "applicant" not in canonical and "gap" not in canonical
    body = leaf_body(action)
    assert body["decision"] == str(item.decision.entry.uuid)
    assert body["actor"] == action.actor_pseudonym and body["actor"].startswith("u-")
    assert body["output"] == {"label": "approve"}
    assert len(body["text_commitment"]) == 64
    assert review_action_text(action) == rationale


def test_each_review_entry_has_a_receipt_that_verifies_once_sealed(
    queued, alice, bob, settings_of, seal, tsa_ca_pem
):
    settings_of.four_eyes = True
    settings_of.save()
    item = review_claim(item=queued(), reviewer=alice)
    review_override(item=item, reviewer=alice, rationale="wrong", output={"label": "approve"})
    review_approve(item=item, approver=bob, rationale="agreed")
    chain = review_chain(decision=item.decision)
    assert [link["kind"] for link in chain] == ["override", "approve"]
    assert {link["status"] for link in chain} == {"pending"}
    assert {link["verified"] for link in chain} == {None}
    seal()
    chain = review_chain(decision=item.decision)
    assert {(link["status"], link["verified"]) for link in chain} == {("sealed", True)}
    for action in item.actions.all():
        report = receipt_verify(
            receipt_get(entry=action.entry), keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem
        )
        assert report.ok, report.as_dict()


def test_a_tampered_review_entry_fails_verification_in_the_chain(queued, alice, seal):
    item = review_claim(item=queued(), reviewer=alice)
    review_confirm(item=item, reviewer=alice, rationale="fine")
    seal()
    entry = item.actions.get().entry
    forged = bytes(entry.canonical).replace(b'"confirm"', b'"override"')
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The tamper tests' bypass of the append-only triggers (tests/timestamping/
            # test_triggers.py); the `db` fixture's transaction rolls it back.
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            f"UPDATE {Entry._meta.db_table} SET canonical = %s WHERE seq = %s",
            [forged, entry.seq],
        )
    (link,) = review_chain(decision=item.decision)
    assert link["verified"] is False
    assert link["detail"].startswith("leaf")


def test_a_reviewer_attributes_a_decision_to_an_owner(record, alice, bob, seal):
    decision = record(owner=None)
    assert decision_owner(decision=decision) is None
    assert decision in decisions_unattributed(user=alice)
    owner = decision_attribute(decision=decision, owner=bob, by=alice)
    assert (owner.source, owner.user, owner.assigned_by) == ("reviewer", bob, alice)
    assert decision_owner(decision=decision) == owner
    assert decision not in decisions_unattributed(user=alice)
    action = ReviewAction.objects.get(decision=decision)
    assert action.kind == "attribution" and action.entry == owner.entry
    assert leaf_body(action)["owner"].startswith("u-")


def test_attribution_needs_the_permission_and_the_system(record, outsider, bob):
    with pytest.raises(NotAllowed):
        decision_attribute(decision=record(owner=None), owner=bob, by=outsider)


def test_the_records_owner_is_the_accountable_owner(record, alice):
    known = record(owner="alice")
    owner = decision_owner(decision=known)
    assert (owner.user, owner.source, owner.entry) == (alice, "record", known.entry)
    named = record(owner="officer-17")
    owner = decision_owner(decision=named)
    assert (owner.user, owner.name) == (None, "officer-17")


def test_the_systems_default_owner_is_named_in_the_leaf(record, settings_of, bob):
    settings_of.default_owner = bob
    settings_of.save()
    decision = record(owner=None)
    owner = decision_owner(decision=decision)
    assert (owner.user, owner.source) == (bob, DecisionOwner.Source.SYSTEM_DEFAULT)
    body = json.loads(bytes(decision.entry.canonical))["body"]
    assert body["attribution"]["source"] == "system_default"
    assert body["attribution"]["owner"].startswith("u-")
    # A record's own owner wins over the default, and is only committed in the leaf.
    decision = record(owner="officer-17")
    assert json.loads(bytes(decision.entry.canonical))["body"]["attribution"] is None


def test_the_queue_lists_overdue_items_first_and_only_assigned_systems(
    queued, alice, outsider, compliance
):
    """The queue is the admin's review item list."""
    first, second, third = queued(), queued(), queued()
    ReviewItem.objects.filter(pk=third.pk).update(due_at=timezone.now() - timedelta(hours=1))
    for user, role in (
        (alice, "reviewer"),
        (outsider, "reviewer"),
        (compliance, "compliance officer"),
    ):
        user.groups.add(Group.objects.get(name=role))

    def queue(user: User, query: str = "") -> list[int]:
        client = Client()
        client.force_login(user)
        response = client.get(f"/admin/review/reviewitem/{query}")
        return [item.pk for item in response.context["cl"].result_list]

    assert queue(alice) == [third.pk, first.pk, second.pk]
    assert queue(outsider) == []
    assert sorted(queue(compliance)) == sorted([first.pk, second.pk, third.pk])
    review_claim(item=first, reviewer=alice)
    assert queue(alice, "?status=claimed") == [first.pk]


def test_a_decision_can_be_sent_to_review_by_hand(record, alice):
    decision = record()
    item = review_item_open(decision=decision, by=alice)
    assert (item.reason, item.status) == ("manual", "open")
