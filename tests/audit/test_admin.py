"""The admin: staff manage AI systems and keys, look at the record, and erase subjects."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.base import ContentFile
from django.test import Client

from audit.models import AISystem, Decision, Document, Subject, SystemAPIKey
from audit.services.retention import document_file_erase
from audit.services.subjects import subject_by_reference
from timestamping.models import Anchor, Entry, LogKey, Tile
from timestamping.services import entry_append

pytestmark = pytest.mark.django_db

AUDIT_MODELS = [
    "aisystem",
    "systemapikey",
    "decision",
    "outcome",
    "modelversion",
    "document",
    "subject",
    "erasure",
]
LEDGER_MODELS = ["entry", "batch", "tile", "logkey", "anchor"]


@pytest.fixture
def recorded(api_client, decision_request, ai_system, seal, settings, tmp_path):
    """One of every row the admin shows: a decision with an outcome, a document whose file was
    erased, a sealed and anchored batch."""
    settings.MEDIA_ROOT = tmp_path
    answer = api_client.post("/api/v1/decisions", decision_request(), format="json").json()
    api_client.post(
        f"/api/v1/decisions/{answer['id']}/outcome",
        {"actual": {"label": "repaid"}, "observed_at": "2027-01-01T00:00:00Z"},
        format="json",
    )
    entry, _ = entry_append(
        kind="document", envelope={"type": "document", "system": ai_system.slug, "sha256": "a" * 64}
    )
    document = Document.objects.create(
        system=ai_system, entry=entry, sha256="a" * 64, file=ContentFile(b"%PDF", name="cv.pdf")
    )
    document_file_erase(document=document, reason="retention")
    seal()
    assert Anchor.objects.exists() and LogKey.objects.exists() and Tile.objects.exists()
    return answer


@pytest.fixture
def superuser_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.org", None))
    return client


def staff_client(*permissions: str) -> Client:
    user = User.objects.create_user("officer", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("app", "model"),
    [("audit", name) for name in AUDIT_MODELS] + [("timestamping", name) for name in LEDGER_MODELS],
)
def test_a_superuser_can_open_every_changelist_and_change_page(
    superuser_client, recorded, app, model
):
    changelist = superuser_client.get(f"/admin/{app}/{model}/")
    assert changelist.status_code == 200
    first = changelist.context["cl"].result_list[0]
    change = superuser_client.get(f"/admin/{app}/{model}/{first.pk}/change/")
    assert change.status_code == 200


@pytest.mark.parametrize(
    ("app", "model"),
    [("timestamping", name) for name in LEDGER_MODELS]
    + [("audit", name) for name in ["decision", "outcome", "modelversion", "document", "subject"]],
)
def test_nobody_can_add_change_or_delete_a_recorded_row_through_the_admin(
    superuser_client, recorded, app, model
):
    changelist = superuser_client.get(f"/admin/{app}/{model}/")
    assert f"/admin/{app}/{model}/add/" not in changelist.content.decode()
    first = changelist.context["cl"].result_list[0]
    before = {k: v for k, v in vars(first).items() if not k.startswith("_")}

    assert superuser_client.get(f"/admin/{app}/{model}/add/").status_code == 403
    assert superuser_client.post(f"/admin/{app}/{model}/{first.pk}/change/", {}).status_code == 403
    assert (
        superuser_client.post(
            f"/admin/{app}/{model}/{first.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    bulk_delete = superuser_client.post(
        f"/admin/{app}/{model}/",
        {"action": "delete_selected", "_selected_action": [first.pk], "post": "yes"},
    )
    assert bulk_delete.status_code in (200, 302)
    first.refresh_from_db()
    assert {k: v for k, v in vars(first).items() if not k.startswith("_")} == before


def test_a_malformed_search_of_the_log_finds_nothing_instead_of_failing(superuser_client, recorded):
    assert superuser_client.get("/admin/timestamping/entry/?q=not-a-uuid").status_code == 200
    assert superuser_client.get("/admin/timestamping/batch/?q=twelve").status_code == 200
    found = superuser_client.get(f"/admin/timestamping/entry/?q={recorded['id']}")
    assert [entry.uuid for entry in found.context["cl"].result_list] == [
        Entry.objects.get(uuid=recorded["id"]).uuid
    ]


def test_decisions_are_filtered_by_system_and_model_version_and_found_by_client_id(
    superuser_client, recorded, ai_system
):
    decision = Decision.objects.get()
    for query in (
        f"system__id__exact={ai_system.pk}",
        f"model_version__id__exact={decision.model_version_id}",
        "q=loan-1",
    ):
        page = superuser_client.get(f"/admin/audit/decision/?{query}")
        assert list(page.context["cl"].result_list) == [decision], query
    assert (
        list(superuser_client.get("/admin/audit/decision/?q=loan-9").context["cl"].result_list)
        == []
    )


def erase_action(client: Client, decision: Decision, **extra: str):
    return client.post(
        "/admin/audit/decision/",
        {"action": "erase_subjects", "_selected_action": [decision.pk], **extra},
    )


def test_a_staff_user_without_the_permission_neither_sees_nor_runs_the_erase_action(
    recorded, ai_system
):
    client = staff_client("view_decision")
    changelist = client.get("/admin/audit/decision/")
    assert changelist.status_code == 200
    assert "erase_subjects" not in changelist.content.decode()

    erase_action(client, Decision.objects.get(), post="yes", reason="Art. 17")

    assert subject_by_reference(system=ai_system, reference="applicant-88231").wrapped_key


def test_the_erase_action_asks_for_confirmation_then_erases_the_subject(recorded, ai_system):
    # review_all_systems: the admin lists only the systems in the user's scope (review.permissions).
    client = staff_client("view_decision", "erase_subject", "review_all_systems")
    assert "erase_subjects" in client.get("/admin/audit/decision/").content.decode()
    decision = Decision.objects.get()

    confirmation = erase_action(client, decision)
    assert confirmation.status_code == 200
    assert "This cannot be undone" in confirmation.content.decode()
    assert Subject.objects.get().wrapped_key is not None

    without_reason = erase_action(client, decision, post="yes")
    assert without_reason.status_code == 200
    assert Subject.objects.get().wrapped_key is not None

    done = erase_action(client, decision, post="yes", reason="Art. 17 request")
    assert done.status_code == 302
    erased = Subject.objects.get()
    assert erased.wrapped_key is None
    erasure = erased.erasures.get()
    assert (erasure.decisions, erasure.note, erasure.erased_by.username) == (
        1,
        "Art. 17 request",
        "officer",
    )
    page = client.get(done["Location"])
    assert "Erased the personal data of 1 subject (1 decision)" in page.content.decode()


def test_a_new_api_key_from_the_admin_is_shown_once_and_works(superuser_client):
    response = superuser_client.post(
        "/admin/audit/aisystem/add/",
        {
            "name": "CV screener",
            "slug": "cv-screener",
            "description": "",
            "risk_level": "high",
            "contest_contact": "appeals@example.org",
            "retention_days": "365",
            "api_keys-TOTAL_FORMS": "1",
            "api_keys-INITIAL_FORMS": "0",
            "api_keys-MIN_NUM_FORMS": "0",
            "api_keys-MAX_NUM_FORMS": "1000",
            "api_keys-0-name": "production",
        },
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(message) for message in response.context["messages"]]
    keys = [match for text in shown for match in re.findall(r" is (\S+\.\S+) ", text)]
    assert len(keys) == 1
    api_key = SystemAPIKey.objects.get_from_key(keys[0])
    assert api_key.system == AISystem.objects.get(slug="cv-screener")
    assert keys[0] not in superuser_client.get("/admin/audit/systemapikey/").content.decode()


def test_a_key_revoked_in_the_admin_no_longer_authenticates(
    superuser_client, api_client, decision_request
):
    superuser_client.post(
        "/admin/audit/systemapikey/",
        {"action": "revoke", "_selected_action": [SystemAPIKey.objects.get().pk]},
    )
    response = api_client.post("/api/v1/decisions", decision_request(), format="json")
    assert response.status_code == 401


def test_a_systems_slug_cannot_be_changed_once_it_wrote_entries(
    superuser_client, recorded, ai_system
):
    page = superuser_client.get(f"/admin/audit/aisystem/{ai_system.pk}/change/")
    assert 'name="slug"' not in page.content.decode()


def test_only_keys_that_name_an_ai_system_are_offered(superuser_client):
    assert superuser_client.get("/admin/rest_framework_api_key/apikey/").status_code == 404
    assert superuser_client.get("/admin/audit/systemapikey/add/").status_code == 200
