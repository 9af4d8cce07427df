"""The bias dashboard's pages: public and staff views, filters, charts, the summary sentence."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.staticfiles import finders

from audit.models import AISystem, Decision, ModelVersion
from audit.selectors import decisions_by_client_id
from audit.serializers import DecisionSerializer
from audit.services.bulk import BulkItem, decisions_bulk_record
from audit.services.decisions import outcome_record
from audit.services.subjects import decision_client_id
from bias import dashboard
from bias.selectors import bias_report_build
from tests.audit.conftest import AISystemFactory

pytestmark = pytest.mark.django_db


def blocks_record(system: AISystem, blocks: Iterable[dict[str, Any]]) -> None:
    """Decisions through the bulk service, block by block: `count` decisions of which the first
    `selected` are approved, with the block's attributes, version, day and (optionally) actual
    outcome for every decision."""
    items, actuals = [], {}
    number = Decision.objects.filter(system=system).count()
    for block in blocks:
        for index in range(block["count"]):
            number += 1
            chosen = index < block["selected"]
            attributes = {
                name: block[name] for name in ("sex", "race") if block.get(name) is not None
            }
            checked = DecisionSerializer(
                data={
                    "client_decision_id": f"{system.slug}-{number}",
                    "model": {"name": "scorer", "version": block.get("version", "1.0")},
                    "occurred_at": f"{block.get('day', '2026-01-15')}T10:00:00Z",
                    "inputs_sha256": "0" * 64,
                    "output": {
                        "label": "approve" if chosen else "deny",
                        "score": 0.9 if chosen else 0.1,
                    },
                    "solely_automated": True,
                    "subject_ref": f"person-{system.slug}-{number}",
                    "protected_attributes": attributes,
                }
            )
            checked.is_valid(raise_exception=True)
            items.append(BulkItem(index=number, data=checked.validated_data))
            if block.get("actual"):
                actuals[f"{system.slug}-{number}"] = block["actual"]
    results = decisions_bulk_record(system=system, items=items)
    assert all(result.status == 201 for result in results), results
    for decision in decisions_by_client_id(system=system, client_ids=list(actuals)).select_related(
        "entry", "subject", "system"
    ):
        outcome_record(
            decision=decision,
            actual={"label": actuals[decision_client_id(decision)]},
            observed_at=decision.occurred_at,
        )


LOANS = [
    # Model 1.0 in January: women approved half as often as men.
    {"count": 40, "selected": 12, "sex": "female", "race": "White", "actual": "repaid"},
    {"count": 40, "selected": 24, "sex": "male", "race": "White", "actual": "repaid"},
    {"count": 4, "selected": 2, "sex": "nonbinary", "race": "Asian"},  # small, no outcomes
    {"count": 5, "selected": 2, "race": "White"},  # sex unknown
    # Model 2.0 in March: nearly equal.
    {"count": 40, "selected": 22, "sex": "female", "race": "Asian", "version": "2.0",
     "day": "2026-03-10"},
    {"count": 40, "selected": 24, "sex": "male", "race": "Asian", "version": "2.0",
     "day": "2026-03-10"},
]  # fmt: skip


@pytest.fixture
def loans() -> AISystem:
    system = AISystemFactory(slug="loans", name="Loans", is_public=True)
    blocks_record(system, LOANS)
    return system


@pytest.fixture
def private_loans() -> AISystem:
    system = AISystemFactory(slug="secret-loans", name="Secret loans", is_public=False)
    blocks_record(system, LOANS[:3])
    return system


def staff_user(username: str = "auditor", *permissions: str) -> User:
    user = User.objects.create_user(username, password="pw-for-tests-only", is_staff=True)
    for codename in ("view_outcomecount", *permissions):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return User.objects.get(pk=user.pk)  # permissions are cached per instance


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def test_the_public_dashboard_of_a_public_system_leaves_small_cells_out(client, loans):
    response = client.get("/bias/loans/")
    assert response.status_code == 200
    page = text_of(response)
    assert "Public view" in page
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="bias-chart"' in page
    assert 'id="selection-rates-title"' in page and 'id="selection-ratios-title"' in page
    report = response.context["report"]
    # The 4 nonbinary decisions of January are a dropped cell: no row, no bar, no total, and
    # not a word that they exist (a group without data answers the same).
    assert [group["key"] for group in report["groups"]] == ["female", "male"]
    assert "nonbinary" not in page and report["total"] == 160


def test_staff_see_every_group_and_can_preview_the_public_view(client, loans):
    client.force_login(staff_user())
    page = text_of(client.get("/bias/loans/"))
    assert "Staff view" in page
    row = re.search(r"<th scope=\"row\">nonbinary.*?</tr>", page).group(0)
    assert ">4<" in row and "suppressed" not in row
    preview = client.get("/bias/loans/?view=public")
    assert preview.context["public"] and "Public view" in text_of(preview)


def test_a_private_system_is_hidden_from_the_public_and_whole_for_staff(client, private_loans):
    assert client.get("/bias/secret-loans/").status_code == 404
    assert client.get("/bias/secret-loans/summary").status_code == 404
    assert "Secret loans" not in text_of(client.get("/bias/"))
    plain_staff = User.objects.create_user("clerk", is_staff=True)
    client.force_login(plain_staff)
    assert client.get("/bias/secret-loans/").status_code == 404
    client.force_login(staff_user())
    response = client.get("/bias/secret-loans/")
    assert response.status_code == 200 and not response.context["public"]
    assert "Secret loans" in text_of(client.get("/bias/"))


def test_the_summary_sentence_gives_the_reports_ratio_and_p_value(client, loans):
    version = _version(loans, "1.0")
    response = client.get(f"/bias/loans/?model_version={version.pk}&reference=most_favoured")
    report = bias_report_build(
        system=loans,
        attributes=["sex"],
        model_version=version,
        reference="most_favoured",
        public=True,
    )
    women = next(group for group in report["groups"] if group["key"] == "female")
    versus = women["vs_reference"]["selection_rate"]
    assert report["reference"]["group"] == "male"
    assert versus["ratio"] == pytest.approx(0.5)
    expected = (
        f"Women are selected at {versus['ratio']:.2f} times the rate of men, below the "
        f"four-fifths threshold; {dashboard.p_text(versus['p_value'])}."
    )
    assert (
        expected
        == "Women are selected at 0.50 times the rate of men, below the four-fifths "
        + (f"threshold; p = {versus['p_value']:.3f}.")
    )
    assert expected in text_of(response)


def test_an_intersection_states_each_attribute_and_the_worst_group(client, loans):
    response = client.get("/bias/loans/?attributes=sex,race")
    page = text_of(response)
    assert "By race alone" in page and "By sex alone" in page
    # Groups are keyed in the checkbox order (race, sex), whatever the order asked.
    assert response.context["report"]["attributes"] == ["race", "sex"]
    sentences = response.context["sentences"]
    # Each attribute alone (race: 38/85 White against 48/84 Asian; sex: 34/80 women against
    # 48/80 men), then the intersection's worst group (12/40 White women against the most
    # selected, 24/40 White or Asian men).
    assert sentences[0].startswith("People of race White are selected at 0.78 times the rate of")
    assert sentences[1].startswith("Women are selected at 0.71 times the rate of men")
    assert sentences[2].startswith("Women of race White are selected at 0.50 times the rate of")
    for sentence in sentences[:3]:
        assert sentence in page


def test_filters_narrow_the_report(client, loans):
    everything = client.get("/bias/loans/").context["report"]
    assert everything["total"] == 160  # 169 less the dropped cells of 4 and 5
    by_version = client.get(f"/bias/loans/?model_version={_version(loans, '2.0').pk}")
    assert by_version.context["report"]["total"] == 80
    march = client.get("/bias/loans/?date_from=2026-03-01&date_to=2026-03-31")
    assert march.context["report"]["total"] == 80
    assert march.context["report"]["first_day"] == "2026-03-01"  # public figures are months
    named = client.get("/bias/loans/?reference=female")
    assert named.context["report"]["reference"]["group"] == "female"
    final = client.get("/bias/loans/?outcome=final")
    assert final.context["report"]["outcome"] == "final"
    checked = text_of(final)
    assert 'value="final" id="id_outcome_1" checked' in checked or re.search(
        r'<input type="radio" name="outcome" value="final"[^>]*checked', checked
    )


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("reference=martian", "reference", "no group 'martian'"),
        ("attributes=colour", "attributes", "Select a valid choice"),
        ("date_from=2026-04-01&date_to=2026-01-01", "date_from", "starts after it ends"),
        ("date_from=yesterday", "date_from", "Enter a valid date"),
    ],
)
def test_a_bad_filter_is_named_and_nothing_is_reported(client, loans, query, field, message):
    response = client.get(f"/bias/loans/?{query}")
    assert response.status_code == 400
    form = response.context["form"]
    errors = form.errors.get(field)
    assert errors and message in " ".join(errors)
    assert response.context["report"] is None
    assert message.replace("'", "&#x27;") in response.content.decode()


def test_a_rate_without_a_denominator_is_a_dash(client, loans):
    client.force_login(staff_user())
    response = client.get("/bias/loans/")
    small = next(g for g in response.context["report"]["groups"] if g["key"] == "nonbinary")
    assert small["rates"]["tpr"]["value"] is None
    page = text_of(response)
    rows = re.findall(r"<th scope=\"row\">nonbinary</th>.*?</tr>", page)
    assert rows, "the error-rate table has a row for the group"
    assert "—" in rows[-1]


def test_trends_mark_the_model_update(client, loans):
    response = client.get("/bias/loans/?period=month")
    trends = response.context["trends"]
    assert "scorer 2.0" in trends["note"]
    page = text_of(response)
    assert 'class="version-change"' in page and ">scorer 2.0</text>" in page
    assert 'id="trend-ratios-title"' in page


def test_the_printable_summary_has_the_ll144_figures(client, loans):
    response = client.get("/bias/loans/summary?attributes=sex")
    assert response.status_code == 200
    page = text_of(response)
    report = response.context["report"]
    for heading in ("Data source", "Data covered", "Unknown category", "Impact ratio"):
        assert heading in page
    # Five decisions without a sex: fewer than the public minimum, so a dropped cell that no
    # count includes.
    assert report["summary"]["unknown_count"] == 0
    assert "0 decisions whose sex is not known" in page
    client.force_login(staff_user())
    staff_page = text_of(client.get("/bias/loans/summary?attributes=sex"))
    assert "5 decisions whose sex is not known" in staff_page
    women = next(group for group in report["groups"] if group["key"] == "female")
    assert f"{women['impact_ratio']:.2f}" in page
    assert "bias/bias.css" in page
    assert "@media print" in open(finders.find("bias/bias.css")).read()


def test_the_index_lists_public_systems_for_everyone(client, loans, private_loans):
    page = text_of(client.get("/bias/"))
    assert 'href="/bias/loans/"' in page and "/bias/secret-loans/" not in page


def test_a_system_without_attributes_says_so(client):
    AISystemFactory(slug="empty", is_public=True)
    response = client.get("/bias/empty/")
    assert response.status_code == 200
    assert "No decision of this system reports protected attributes yet" in text_of(response)


def _version(system: AISystem, version: str) -> ModelVersion:
    return ModelVersion.objects.get(system=system, version=version)


def test_the_system_picker_moves_to_another_system_keeping_the_window(client, loans):
    other = AISystemFactory(slug="cv-screener", name="CV screener", is_public=True)
    blocks_record(other, [{"count": 12, "selected": 6, "sex": "female"}])
    page = text_of(client.get("/bias/loans/"))
    assert '<option value="cv-screener">CV screener</option>' in page
    response = client.get(
        "/bias/loans/?system=cv-screener&date_from=2026-01-01&reference=male&outcome=final"
    )
    assert response.status_code == 302
    assert response["Location"] == "/bias/cv-screener/?date_from=2026-01-01&outcome=final"
    assert client.get(response["Location"]).status_code == 200


@pytest.mark.parametrize("chosen", ["bad slug", "../admin", "x/y", "é"])
def test_the_system_picker_refuses_a_name_that_is_no_slug(client, loans, chosen):
    response = client.get("/bias/loans/", {"system": chosen})
    assert response.status_code == 404


def test_by_default_groups_are_compared_with_the_most_selected_one(client, loans):
    response = client.get("/bias/loans/")
    report = response.context["report"]
    assert report["reference"] == {"mode": "most_favoured", "group": "male"}
    # 34 of 80 women against 48 of 80 men, over both model versions.
    assert "Women are selected at 0.71 times the rate of men, below the four-fifths" in text_of(
        response
    )


def test_each_marginal_table_names_its_own_reference(client, loans):
    response = client.get("/bias/loans/?attributes=race,sex")
    sections = {name: reference["key"] for name, _, reference in response.context["marginals"]}
    assert sections == {"race": "Asian", "sex": "male"}
    page = text_of(response)
    assert "race: selection against the reference group (Asian)" in page
    assert "sex: selection against the reference group (male)" in page


def test_the_json_and_csv_links_give_the_same_report(client, loans):
    response = client.get(f"/bias/loans/?attributes=sex&model_version={_version(loans, '1.0').pk}")
    report = response.context["report"]
    page = response.content.decode()
    assert (
        f'href="/api/v1/bias/report?{response.context["api_query"]}"'.replace("&", "&amp;") in page
    )
    answer = client.get(f"/api/v1/bias/report?{response.context['api_query']}")
    assert answer.status_code == 200, answer.content
    assert answer.json()["total"] == report["total"] == 80  # 89 less the suppressed 4 and 5
    assert answer.json()["model_version"] == "scorer 1.0"
    csv_answer = client.get(f"/api/v1/bias/report?{response.context['csv_query']}")
    assert csv_answer.status_code == 200 and "female" in csv_answer.content.decode()


def test_the_page_tests_only_the_rate_it_shows_and_the_api_every_rate(client, loans):
    report = client.get("/bias/loans/?attributes=sex&reference=male").context["report"]
    women = next(group for group in report["groups"] if group["key"] == "female")
    assert women["vs_reference"]["selection_rate"]["p_value"] is not None
    assert women["vs_reference"]["tpr"]["p_value"] is None
    assert women["vs_reference"]["tpr"]["ratio"] is not None  # the error table's ratio stays
    answer = client.get("/api/v1/bias/report?system=loans&attributes=sex&reference=male").json()
    women = next(group for group in answer["groups"] if group["key"] == "female")
    assert women["vs_reference"]["selection_rate"]["p_value"] == pytest.approx(
        report["groups"][0]["vs_reference"]["selection_rate"]["p_value"]
    )
    assert women["vs_reference"]["tpr"]["p_value"] is not None
