"""The permission matrix of the admin: each role against each page and action, allowed and refused.

Roles are the groups staff/roles.py creates; "reviewer" is assigned to the decision's system,
"outsider" is a reviewer of another system only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from audit.models import AISystem, Decision
from review.models import DecisionOwner, PolicySet, ReviewAction, ReviewItem, ReviewSettings
from review.services import review_claim, review_item_open, review_override
from staff.models import AdminEvent
from tests.audit.conftest import AISystemFactory
from timestamping.models import Entry

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "staff", "reviewer", "outsider", "compliance", "administrator", "superuser"]
GROUPS = {
    "reviewer": "reviewer",
    "second_reviewer": "reviewer",
    "outsider": "reviewer",
    "compliance": "compliance officer",
    "administrator": "administrator",
}


@dataclass
class World:
    system: AISystem
    other: AISystem
    settings: ReviewSettings
    decision: Decision
    unattributed: Decision
    item: ReviewItem
    users: dict[str, User]

    def client(self, role: str) -> Client:
        client = Client()
        if role != "anonymous":
            client.force_login(self.users[role])
        return client


@pytest.fixture
def world(record, settings_of, ai_system) -> World:
    other = AISystemFactory()
    users: dict[str, User] = {}
    for role in ["staff", *GROUPS]:
        user = User.objects.create_user(role, is_staff=True)
        if role in GROUPS:
            user.groups.add(Group.objects.get(name=GROUPS[role]))
        users[role] = user
    users["superuser"] = User.objects.create_superuser("root")
    settings_of.four_eyes = True
    settings_of.save()
    settings_of.reviewers.add(users["reviewer"], users["second_reviewer"])
    ReviewSettings.objects.create(system=other).reviewers.add(users["outsider"])
    decision = record()
    item = review_item_open(decision=decision, by=None)
    return World(
        system=ai_system,
        other=other,
        settings=settings_of,
        decision=decision,
        unattributed=record(owner=None),
        item=item,
        users={name: User.objects.get(pk=user.pk) for name, user in users.items()},
    )


def outcome(response: Any) -> str:
    """What a response means: ok (200), login (sent to log in), denied (403), hidden (the
    object is out of the user's reach: the admin answers as if it did not exist)."""
    if response.status_code == 200:
        return "ok"
    if response.status_code == 403:
        return "denied"
    if response.status_code == 302:
        location = response["Location"]
        if location.startswith("/admin/login/"):
            return "login"
        if location == "/admin/":
            return "hidden"
    return f"unexpected {response.status_code}"


def row(**expected: str) -> dict[str, str]:
    """Expected outcome per role; `others` stands for every role not named."""
    others = expected.pop("others", None)
    table = {role: expected.get(role, others) for role in ROLES}
    table["anonymous"] = expected.get("anonymous", "login")
    assert None not in table.values(), expected
    return table


# Who may open which page. `hidden` is the answer for an object of a system the user does not
# review: reviewers see only the systems assigned to them.
PAGES: dict[str, tuple[str, dict[str, str]]] = {
    "admin index": ("/admin/", row(others="ok")),
    "review queue": (
        "/admin/review/reviewitem/",
        row(staff="denied", others="ok"),
    ),
    "review item": (
        "/admin/review/reviewitem/{item}/change/",
        row(staff="denied", outsider="hidden", others="ok"),
    ),
    "decisions": ("/admin/audit/decision/", row(staff="denied", others="ok")),
    "decision": (
        "/admin/audit/decision/{decision}/change/",
        row(staff="denied", outsider="hidden", others="ok"),
    ),
    "unattributed decisions": (
        "/admin/staff/unattributeddecision/",
        row(staff="denied", others="ok"),
    ),
    "oversight analytics": (
        "/admin/review/reviewitem/oversight/",
        row(staff="denied", reviewer="denied", outsider="denied", others="ok"),
    ),
    "review settings list": (
        "/admin/review/reviewsettings/",
        row(staff="denied", others="ok"),
    ),
    "review settings": (
        "/admin/review/reviewsettings/{settings}/change/",
        row(staff="denied", outsider="hidden", others="ok"),
    ),
    "AI system": (
        "/admin/audit/aisystem/{system}/change/",
        row(staff="denied", outsider="hidden", others="ok"),
    ),
    "model version": (
        "/admin/audit/modelversion/{model_version}/change/",
        row(staff="denied", outsider="hidden", others="ok"),
    ),
    "policy sets": ("/admin/review/policyset/", row(staff="denied", others="ok")),
    "publish a policy set": (
        "/admin/review/policyset/publish/",
        row(administrator="ok", superuser="ok", others="denied"),
    ),
    "review actions": ("/admin/review/reviewaction/", row(staff="denied", others="ok")),
    "decision owners": ("/admin/review/decisionowner/", row(staff="denied", others="ok")),
    "webhook deliveries": (
        "/admin/review/webhookdelivery/",
        row(compliance="ok", administrator="ok", superuser="ok", others="denied"),
    ),
    "admin events": (
        "/admin/staff/adminevent/",
        row(compliance="ok", administrator="ok", superuser="ok", others="denied"),
    ),
    "login attempts (axes)": (
        "/admin/axes/accessattempt/",
        row(compliance="ok", administrator="ok", superuser="ok", others="denied"),
    ),
    # Not for reviewers: the entry list cannot be scoped by system cheaply.
    "log entries": (
        "/admin/timestamping/entry/",
        row(staff="denied", reviewer="denied", outsider="denied", others="ok"),
    ),
    "users": (
        "/admin/auth/user/",
        row(compliance="ok", administrator="ok", superuser="ok", others="denied"),
    ),
    "erasures": (
        "/admin/audit/erasure/",
        row(compliance="ok", administrator="ok", superuser="ok", others="denied"),
    ),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", list(PAGES))
def test_each_role_opens_exactly_the_pages_it_should(world: World, page: str, role: str) -> None:
    template, expected = PAGES[page]
    url = template.format(
        item=world.item.pk,
        decision=world.decision.pk,
        settings=world.settings.pk,
        system=world.system.pk,
        model_version=world.decision.model_version_id,
    )
    assert outcome(world.client(role).get(url)) == expected[role]


@pytest.mark.parametrize(
    ("role", "sees"),
    [
        ("reviewer", True),
        ("outsider", False),
        ("compliance", True),
        ("administrator", True),
        ("superuser", True),
    ],
)
def test_the_queue_and_decision_lists_show_only_the_systems_a_reviewer_is_assigned(
    world: World, role: str, sees: bool
) -> None:
    client = world.client(role)
    queue = client.get("/admin/review/reviewitem/").context["cl"].result_list
    decisions = client.get("/admin/audit/decision/").context["cl"].result_list
    unattributed = client.get("/admin/staff/unattributeddecision/").context["cl"].result_list
    assert (world.item in list(queue)) is sees
    assert (world.decision in list(decisions)) is sees
    assert ([d.pk for d in unattributed] == [world.unattributed.pk]) is sees
    if not sees:
        assert list(queue) == list(decisions) == list(unattributed) == []


@pytest.fixture
def records(world: World) -> dict[str, Any]:
    """A row of each system-scoped model for the assigned system: what a reviewer of another
    system must not see (every system is private by default)."""
    from audit.services.decisions import outcome_record
    from review.services import policy_set_publish

    assert not world.system.is_public
    return {
        "aisystem": world.system,
        "modelversion": world.decision.model_version,
        "outcome": outcome_record(
            decision=world.decision,
            actual={"label": "approve"},
            observed_at=world.decision.received_at,
        ),
        "reviewsettings": world.settings,
        "policyset": policy_set_publish(system=world.system, rules=[], by=world.users["superuser"]),
    }


SCOPED = {"aisystem": "audit", "modelversion": "audit", "outcome": "audit"} | {
    "reviewsettings": "review",
    "policyset": "review",
}


@pytest.mark.parametrize(
    ("role", "sees"),
    [("reviewer", True), ("outsider", False), ("compliance", True), ("administrator", True)],
)
@pytest.mark.parametrize("model", list(SCOPED))
def test_system_records_are_listed_and_opened_only_in_the_users_scope(
    records: dict[str, Any], world: World, model: str, role: str, sees: bool
) -> None:
    client = world.client(role)
    target = records[model]
    base = f"/admin/{SCOPED[model]}/{model}/"
    listed = client.get(base)
    assert listed.status_code == 200
    assert (target.pk in [row.pk for row in listed.context["cl"].result_list]) is sees
    # Nor named in a list filter: a private system's name is not for other reviewers.
    assert (world.system.name in listed.content.decode()) is sees
    assert outcome(client.get(f"{base}{target.pk}/change/")) == ("ok" if sees else "hidden")


RECEIPT = row(
    anonymous="hidden",
    staff="hidden",
    reviewer="ok",
    outsider="hidden",
    compliance="ok",
    administrator="ok",
    superuser="ok",
)


@pytest.mark.parametrize("role", ROLES)
def test_a_private_systems_receipts_are_for_staff_in_its_scope(world: World, role: str) -> None:
    url = reverse("entry-receipt", kwargs={"entry_id": world.decision.entry.uuid})
    response = world.client(role).get(url)
    assert {200: "ok", 404: "hidden"}[response.status_code] == RECEIPT[role]


@pytest.mark.parametrize(
    "url", ["/admin/review/reviewitem/oversight/", "/admin/review/policyset/publish/"]
)
@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "99999999999999999999999", "", "0"])
def test_a_bad_system_id_in_the_query_string_is_ignored_not_a_server_error(
    world: World, url: str, value: str
) -> None:
    response = world.client("administrator").get(f"{url}?system={value}")
    assert response.status_code == 200
    if "oversight" in url:
        assert response.context["system"] is None
    else:
        assert response.context["form"].initial["system"] is None


def test_only_those_who_may_change_review_settings_see_the_webhook_secret(world: World) -> None:
    from review.services import webhook_secret

    secret = webhook_secret(system=world.system)
    url = f"/admin/review/reviewsettings/{world.settings.pk}/change/"
    assert secret in world.client("administrator").get(url).content.decode()
    for role in ("reviewer", "compliance"):
        assert secret not in world.client(role).get(url).content.decode()


# Ledgered rows: no add, change or delete for anyone, superusers included.
LEDGER = [
    ("timestamping", "entry", lambda w: Entry.objects.first()),
    ("audit", "decision", lambda w: w.decision),
    ("review", "reviewaction", lambda w: ReviewAction.objects.first()),
    ("review", "policyset", lambda w: PolicySet.objects.first()),
    ("review", "decisionowner", lambda w: DecisionOwner.objects.first()),
    ("review", "reviewitem", lambda w: w.item),
    ("staff", "adminevent", lambda w: AdminEvent.objects.first()),
]


@pytest.fixture
def ledgered(world: World) -> World:
    """One row of each ledgered model: a published policy, an attribution, an admin event."""
    from review.services import decision_attribute, policy_set_publish

    root = world.users["superuser"]
    policy_set_publish(system=world.system, rules=[], by=root)
    decision_attribute(decision=world.unattributed, owner=root, by=root)
    AdminEvent.objects.create(kind=AdminEvent.Kind.LOGIN, username="root")
    return world


@pytest.mark.parametrize("role", ["compliance", "administrator", "superuser"])
@pytest.mark.parametrize(("app", "model", "pick"), LEDGER, ids=[m for _, m, _ in LEDGER])
def test_nobody_adds_changes_or_deletes_a_ledgered_row_in_the_admin(
    ledgered: World, role: str, app: str, model: str, pick: Any
) -> None:
    client = ledgered.client(role)
    target = pick(ledgered)
    assert target is not None
    before = {k: v for k, v in vars(target).items() if not k.startswith("_")}
    changelist = client.get(f"/admin/{app}/{model}/")
    assert changelist.status_code == 200
    assert f"/admin/{app}/{model}/add/" not in changelist.content.decode()
    assert "delete_selected" not in changelist.content.decode()

    assert client.get(f"/admin/{app}/{model}/add/").status_code == 403
    assert client.post(f"/admin/{app}/{model}/{target.pk}/change/", {}).status_code == 403
    assert client.post(
        f"/admin/{app}/{model}/{target.pk}/delete/", {"post": "yes"}
    ).status_code in (403,)
    client.post(
        f"/admin/{app}/{model}/",
        {"action": "delete_selected", "_selected_action": [target.pk], "post": "yes"},
    )
    target.refresh_from_db()
    assert {k: v for k, v in vars(target).items() if not k.startswith("_")} == before


# ---------------------------------------------------------------------------------------------
# Actions


def act(client: Client, item: ReviewItem, step: str, **data: Any):
    return client.post(reverse("admin:review_act", args=[item.pk, step]), data)


def review_events(action: str) -> list[AdminEvent]:
    return [
        event
        for event in AdminEvent.objects.filter(kind=AdminEvent.Kind.REVIEW)
        if event.detail.get("action") == action
    ]


CLAIM = row(
    staff="denied",
    reviewer="done",
    outsider="denied",
    compliance="refused",
    administrator="done",
    superuser="done",
)


@pytest.mark.parametrize("role", ROLES)
def test_who_may_claim_a_review(world: World, role: str) -> None:
    response = act(world.client(role), world.item, "claim")
    world.item.refresh_from_db()
    claimed = world.item.status == ReviewItem.Status.CLAIMED
    if CLAIM[role] == "done":
        assert response.status_code == 302
        assert claimed and world.item.claimed_by == world.users[role]
        assert len(review_events("claim")) == 1
    else:
        assert not claimed
        assert review_events("claim") == []
        expected = {"refused": 302, "denied": 403, "login": 302}[CLAIM[role]]
        assert response.status_code == expected


def test_a_refused_step_tells_the_user_why(world: World) -> None:
    client = world.client("compliance")
    response = act(client, world.item, "claim")
    page = client.get(response["Location"])
    assert "you may not" in " ".join(str(m) for m in page.context["messages"])


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("step", ["confirm", "override", "escalate"])
def test_only_the_reviewer_holding_the_claim_decides(world: World, role: str, step: str) -> None:
    review_claim(item=world.item, reviewer=world.users["reviewer"])
    data = {"rationale": "Income was misread.", "label": "approve"}
    response = act(world.client(role), world.item, step, **data)
    world.item.refresh_from_db()
    moved = world.item.status != ReviewItem.Status.CLAIMED
    assert moved is (role == "reviewer")
    if role == "reviewer":
        assert len(review_events(step)) == 1
    elif role in ("staff", "outsider"):
        assert response.status_code == 403
    elif role == "anonymous":
        assert outcome(response) == "login"


def test_a_step_without_a_rationale_is_refused_and_changes_nothing(world: World) -> None:
    review_claim(item=world.item, reviewer=world.users["reviewer"])
    client = world.client("reviewer")
    response = act(client, world.item, "confirm", rationale="  ")
    world.item.refresh_from_db()
    assert world.item.status == ReviewItem.Status.CLAIMED
    messages = [str(m) for m in client.get(response["Location"]).context["messages"]]
    assert any("required" in message for message in messages)


APPROVE = row(
    staff="denied",
    reviewer="refused",  # the one who proposed the override: four-eyes
    outsider="denied",
    compliance="refused",
    administrator="done",
    superuser="done",
)


@pytest.mark.parametrize("role", [*ROLES, "second_reviewer"])
def test_an_override_is_approved_only_by_a_second_permitted_reviewer(
    world: World, role: str
) -> None:
    reviewer = world.users["reviewer"]
    review_claim(item=world.item, reviewer=reviewer)
    review_override(
        item=world.item, reviewer=reviewer, rationale="Misread income.", output={"label": "approve"}
    )
    world.item.refresh_from_db()
    assert world.item.status == ReviewItem.Status.AWAITING_APPROVAL

    response = act(world.client(role), world.item, "approve", rationale="Agreed.")
    world.item.refresh_from_db()
    expected = "done" if role == "second_reviewer" else APPROVE[role]
    if expected == "done":
        assert world.item.status == ReviewItem.Status.CLOSED
        assert world.item.final_output == {"label": "approve"}
        assert len(review_events("approve")) == 1
    else:
        assert world.item.status == ReviewItem.Status.AWAITING_APPROVAL
        status = {"refused": 302, "denied": 403, "login": 302}[expected]
        assert response.status_code == status


def test_a_second_reviewer_can_reject_the_override_which_reopens_the_item(world: World) -> None:
    reviewer = world.users["reviewer"]
    review_claim(item=world.item, reviewer=reviewer)
    review_override(
        item=world.item, reviewer=reviewer, rationale="Misread.", output={"label": "approve"}
    )
    act(world.client("second_reviewer"), world.item, "approve", rationale="No.", reject="1")
    world.item.refresh_from_db()
    assert world.item.status == ReviewItem.Status.OPEN
    assert review_events("reject")


ERASE = row(
    staff="denied",
    reviewer="refused",
    outsider="refused",
    compliance="done",
    administrator="done",
    superuser="done",
)


@pytest.mark.parametrize("role", ROLES)
def test_who_may_erase_a_subjects_personal_data(world: World, role: str) -> None:
    response = world.client(role).post(
        "/admin/audit/decision/",
        {
            "action": "erase_subjects",
            "_selected_action": [world.decision.pk],
            "post": "yes",
            "reason": "Art. 17 request",
        },
    )
    world.decision.subject.refresh_from_db()
    erased = world.decision.subject.wrapped_key is None
    assert erased is (ERASE[role] == "done")
    if ERASE[role] == "denied":
        assert response.status_code == 403
    if ERASE[role] == "login":
        assert outcome(response) == "login"


ASSIGN = row(
    staff="denied",
    reviewer="done",
    outsider="refused",
    compliance="done",
    administrator="done",
    superuser="done",
)


@pytest.mark.parametrize("role", ROLES)
def test_who_may_assign_an_owner_to_an_unattributed_decision(world: World, role: str) -> None:
    owner = world.users["reviewer"]
    response = world.client(role).post(
        "/admin/staff/unattributeddecision/",
        {
            "action": "assign_owner",
            "_selected_action": [world.unattributed.pk],
            "post": "yes",
            "owner": owner.pk,
        },
    )
    attributed = DecisionOwner.objects.filter(decision=world.unattributed, user=owner).exists()
    assert attributed is (ASSIGN[role] == "done")
    if ASSIGN[role] == "done":
        assert len(review_events("assign_owner")) == 1
        assert world.unattributed.pk not in [
            d.pk
            for d in world.client(role)
            .get("/admin/staff/unattributeddecision/")
            .context["cl"]
            .result_list
        ]
    if ASSIGN[role] == "denied":
        assert response.status_code == 403


PUBLISH_POLICY = row(administrator="done", superuser="done", others="denied")


@pytest.mark.parametrize("role", ROLES)
def test_who_may_publish_a_policy_set(world: World, role: str) -> None:
    rules = json.dumps(
        [
            {
                "name": "large loans",
                "if": {"field": "inputs.amount", "op": "gt", "value": 50000},
                "then": "review",
            }
        ]
    )
    response = world.client(role).post(
        "/admin/review/policyset/publish/", {"system": world.system.pk, "rules": rules}
    )
    published = PolicySet.objects.filter(system=world.system).first()
    assert (published is not None) is (PUBLISH_POLICY[role] == "done")
    if published is not None:
        assert response["Location"] == f"/admin/review/policyset/{published.pk}/change/"
        world.settings.refresh_from_db()
        assert world.settings.current_policy == published
        assert published.entry.kind == "policy"
        assert len(review_events("publish_policy")) == 1
    elif role != "anonymous":
        assert response.status_code == 403


def test_a_policy_set_that_is_not_valid_is_shown_with_its_error_and_not_published(
    world: World,
) -> None:
    response = world.client("administrator").post(
        "/admin/review/policyset/publish/",
        {"system": world.system.pk, "rules": '[{"if": {"field": "x", "op": "zz"}}]'},
    )
    assert response.status_code == 200
    assert response.context["form"].errors["rules"]
    assert not PolicySet.objects.exists()


CHANGE_SETTINGS = row(administrator="done", superuser="done", others="denied")


@pytest.mark.parametrize("role", ROLES)
def test_who_may_change_review_settings(world: World, role: str) -> None:
    response = world.client(role).post(
        f"/admin/review/reviewsettings/{world.settings.pk}/change/",
        {
            "reviewers": [world.users["reviewer"].pk],
            "sampling_rate": "0.5",
            "review_deadline_hours": "24",
            "four_eyes": "on",
            "webhook_url": "",
            "low_confidence_below": "",
            "default_owner": "",
        },
    )
    world.settings.refresh_from_db()
    changed = world.settings.sampling_rate == 0.5
    assert changed is (CHANGE_SETTINGS[role] == "done"), response.status_code
    if role not in ("anonymous",) and not changed:
        assert response.status_code == 403


SEND = row(
    staff="denied",
    reviewer="done",
    outsider="refused",
    compliance="refused",
    administrator="done",
    superuser="done",
)


@pytest.mark.parametrize("role", ROLES)
def test_who_may_send_a_decision_to_the_review_queue(world: World, role: str) -> None:
    response = world.client(role).post(
        "/admin/audit/decision/",
        {"action": "send_to_review", "_selected_action": [world.unattributed.pk]},
    )
    queued = ReviewItem.objects.filter(decision=world.unattributed).exists()
    assert queued is (SEND[role] == "done")
    if SEND[role] == "denied":
        assert response.status_code == 403


PUBLISH_AUDIT = row(
    anonymous="denied", compliance="done", administrator="done", superuser="done", others="denied"
)


@pytest.mark.parametrize("role", ROLES)
def test_who_may_publish_a_bias_audit(world: World, role: str) -> None:
    published_audit = pytest.importorskip("bias.models").PublishedAudit
    AISystem.objects.filter(pk=world.system.pk).update(is_public=True)
    response = world.client(role).post(
        reverse("bias-publish", args=[world.system.slug]), {"attributes": ["sex"]}
    )
    published = published_audit.objects.filter(system=world.system).exists()
    assert published is (PUBLISH_AUDIT[role] == "done"), response.status_code
    if not published:
        assert response.status_code in (403, 404)
