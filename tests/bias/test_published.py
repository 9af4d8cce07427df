"""Publishing a bias audit: a ledger entry whose receipt verifies, holding the report's digest."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
import rfc8785
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from veridict_verify.receipt import receipt_verify

from bias.models import PublishedAudit
from bias.selectors import ReportError, bias_report_build
from bias.services_published import bias_audit_publish
from tests.bias import test_dashboard
from tests.bias.test_dashboard import staff_user, text_of
from timestamping import keys
from timestamping.models import Entry

pytestmark = pytest.mark.django_db

# The dashboard tests' systems and their decisions.
loans = test_dashboard.loans
private_loans = test_dashboard.private_loans


@pytest.fixture
def officer() -> User:
    return staff_user("officer", "publish_audit")


def publish(client, slug: str = "loans", **fields: str):
    data = {"attributes": "sex", "outcome": "ai", **fields}
    return client.post(f"/bias/{slug}/publish", data)


def leaf_body(entry: Entry) -> dict:
    return json.loads(bytes(entry.canonical))["body"]


def test_publishing_appends_the_reports_digest_and_the_receipt_verifies(
    client, loans, officer, seal, tsa_ca_pem
):
    seal()  # the decisions' batch: the audit names its checkpoint
    client.force_login(officer)
    response = publish(client, reference="male")
    audit = PublishedAudit.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/bias/audits/{audit.pk}"
    assert audit.entry.kind == "bias_audit"
    body = leaf_body(audit.entry)
    assert body["type"] == "bias_audit" and body["system"] == "loans"
    assert body["parameters"]["attributes"] == ["sex"]
    assert body["parameters"]["reference"] == "male" and body["parameters"]["public"] is True
    assert body["tree_size"] == audit.tree_size > 0
    assert body["published_by"].startswith("u-") and "officer" not in json.dumps(body)

    # The downloadable report is the very bytes whose SHA-256 the leaf holds, in RFC 8785 form,
    # and it is the public report of that moment.
    anonymous = client.__class__()
    download = anonymous.get(f"/bias/audits/{audit.pk}/report.json")
    assert download.status_code == 200
    assert "attachment" in download["Content-Disposition"]
    report_bytes = download.content
    assert hashlib.sha256(report_bytes).hexdigest() == body["report_sha256"]
    report = json.loads(report_bytes)
    assert rfc8785.dumps(report) == report_bytes
    assert report == bias_report_build(
        system=loans, attributes=["sex"], reference="male", public=True
    )

    seal()
    receipt = json.loads(anonymous.get(f"/bias/audits/{audit.pk}/receipt.json").content)
    verified = receipt_verify(receipt, keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem)
    assert verified.ok, verified.as_dict()
    proved = json.loads(base64.b64decode(receipt["entry"]["canonical_b64"]))
    assert proved["body"]["report_sha256"] == hashlib.sha256(report_bytes).hexdigest()


def test_the_published_page_shows_the_report_and_its_verification(client, loans, officer, seal):
    client.force_login(officer)
    publish(client, reference="male")
    audit = PublishedAudit.objects.get()
    anonymous = client.__class__()
    pending = text_of(anonymous.get(f"/bias/audits/{audit.pk}"))
    assert "awaits sealing" in pending
    seal()
    response = anonymous.get(f"/bias/audits/{audit.pk}")
    assert response.status_code == 200
    page = text_of(response)
    assert "Verified: this report's SHA-256 is in ledger entry" in page
    assert audit.report_sha256 in page and str(audit.entry.uuid) in page
    assert response.context["check"]["verification"]["verdict"] == "verified"
    assert "Women are selected at" in page and "<svg" in page
    assert f'href="/bias/audits/{audit.pk}/report.json"' in page
    assert f"/verify/receipt?entry={audit.entry.uuid}" in page
    assert f'href="/bias/audits/{audit.pk}"' in text_of(anonymous.get("/bias/"))


def test_a_changed_report_no_longer_matches_its_leaf(client, loans, officer, seal):
    client.force_login(officer)
    publish(client)
    seal()
    audit = PublishedAudit.objects.get()
    report = json.loads(bytes(audit.report_canonical))
    report["groups"][0]["count"] += 1
    PublishedAudit.objects.filter(pk=audit.pk).update(report_canonical=rfc8785.dumps(report))
    response = client.get(f"/bias/audits/{audit.pk}")
    assert not response.context["check"]["digest_matches"]
    assert "does NOT match the digest in the ledger" in text_of(response)


def test_publishing_needs_the_permission(client, loans):
    assert publish(client).status_code == 403  # anonymous
    client.force_login(staff_user())  # may read everything, may not publish
    assert publish(client).status_code == 403
    assert not PublishedAudit.objects.exists()
    assert not Entry.objects.filter(kind="bias_audit").exists()
    page = text_of(client.get("/bias/loans/"))
    assert "Publish audit" not in page


def test_the_publish_button_is_for_holders_of_the_permission(client, loans, officer):
    client.force_login(officer)
    page = text_of(client.get("/bias/loans/?attributes=sex&reference=male"))
    assert "Publish audit" in page
    assert '<input type="hidden" name="reference" value="male">' in page


def test_a_refused_parameter_publishes_nothing(client, loans, officer):
    with pytest.raises(ReportError):
        bias_audit_publish(system=loans, by=officer, attributes=["sex"], reference="martian")
    client.force_login(officer)
    response = publish(client, reference="martian")
    assert response.status_code == 302 and "/bias/loans/" in response["Location"]
    assert "Nothing was published" in text_of(client.get(response["Location"]))
    assert not PublishedAudit.objects.exists()
    assert not Entry.objects.filter(kind="bias_audit").exists()


def test_a_private_systems_audit_is_for_staff_only(client, loans, private_loans, officer, seal):
    bias_audit_publish(system=private_loans, by=officer, attributes=["sex"])
    bias_audit_publish(system=loans, by=officer, attributes=["sex"])
    seal()
    private = PublishedAudit.objects.get(system=private_loans)
    public = PublishedAudit.objects.get(system=loans)
    anonymous = client.__class__()
    for suffix in ("", "/report.json", "/receipt.json"):
        assert anonymous.get(f"/bias/audits/{private.pk}{suffix}").status_code == 404
        assert anonymous.get(f"/bias/audits/{public.pk}{suffix}").status_code == 200
    index = text_of(anonymous.get("/bias/"))
    assert f'href="/bias/audits/{public.pk}"' in index
    assert f'href="/bias/audits/{private.pk}"' not in index
    assert private_loans.name not in index

    # Staff who may read every system's counts see it, and the index names it; so does
    # its dashboard's list of audits.
    reader = client.__class__()
    reader.force_login(staff_user("reader"))
    for suffix in ("", "/report.json", "/receipt.json"):
        assert reader.get(f"/bias/audits/{private.pk}{suffix}").status_code == 200
    assert f'href="/bias/audits/{private.pk}"' in text_of(reader.get("/bias/"))
    dashboard = text_of(reader.get(f"/bias/{private_loans.slug}/?attributes=sex"))
    assert f'href="/bias/audits/{private.pk}"' in dashboard
    # A user signed in without that permission is the public.
    other = client.__class__()
    other.force_login(User.objects.create_user("someone"))
    assert other.get(f"/bias/audits/{private.pk}").status_code == 404

    # Published as the public would see it: the small group's cell is dropped even so.
    report = json.loads(bytes(private.report_canonical))
    assert report["public"] is True
    assert "nonbinary" not in [group["key"] for group in report["groups"]]


def test_the_service_refuses_a_user_without_the_permission(loans):
    with pytest.raises(PermissionDenied):
        bias_audit_publish(system=loans, by=staff_user(), attributes=["sex"])


def test_an_unknown_audit_is_a_404(client, db):
    assert client.get("/bias/audits/999").status_code == 404
    assert client.get("/bias/audits/999/report.json").status_code == 404


def test_the_dashboard_of_a_system_with_a_published_audit_shows_how_to_check_it(
    client, loans, officer, seal
):
    seal()
    client.force_login(officer)
    publish(client, reference="male", date_from="2026-01-01")
    audit = PublishedAudit.objects.get()
    page = text_of(client.__class__().get("/bias/loans/"))
    assert 'id="check-it-yourself"' in page and "Check it yourself" in page
    assert "evidence_export --system loans --from 2026-01-01 pkg.ndjson.gz" in page
    assert f"curl -s http://testserver/bias/audits/{audit.pk}/report.json" in page
    assert f"--compare bias-audit-{audit.pk}.json" in page
    assert 'href="/keys/check-yourself#evidence"' in page


def test_the_dashboard_of_a_system_without_a_published_audit_offers_no_evidence_check(
    client, loans, officer, seal
):
    page = text_of(client.get("/bias/loans/"))
    assert "check-it-yourself" not in page and "--compare" not in page
