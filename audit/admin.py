"""The admin of the AI-decision domain: AI systems and their keys to manage; decisions and what
goes with them to look at; erasing the personal data of subjects."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Count, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from audit.models import (
    AISystem,
    Decision,
    Document,
    Erasure,
    ModelVersion,
    Outcome,
    Subject,
    SystemAPIKey,
)
from audit.selectors import decisions_by_client_id_search
from audit.services.evidence import EXPORT_PERMISSION
from audit.services.subjects import (
    decision_client_id,
    decision_erased,
    erasure_decisions_opening,
    subject_erase,
)
from review.permissions import scoped
from timestamping.admin import ReadOnlyAdminMixin
from timestamping.models import Entry
from veridict.admin_links import PermittedLinksAdmin, admin_link

ERASE_PERMISSION = "audit.erase_subject"
SUBJECTS_LISTED = 50
# Filters list only the systems (and versions) of the rows the user may see, never every name.
RELATED = admin.RelatedOnlyFieldListFilter

# The library's own key model authenticates nothing here: a key made there would look valid and
# open no door. Keys are SystemAPIKey, one AI system each.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)

# Kept here rather than in templates/ so that the action and its page change together.
ERASE_CONFIRMATION = engines["django"].from_string(
    """{% extends "admin/base_site.html" %}{% load i18n l10n admin_urls %}
{% block bodyclass %}{{ block.super }} delete-confirmation{% endblock %}
{% block breadcrumbs %}<div class="breadcrumbs">
<a href="{% url 'admin:index' %}">{% translate 'Home' %}</a>
&rsaquo; <a href="{% url 'admin:app_list' app_label=opts.app_label %}">
  {{ opts.app_config.verbose_name }}</a>
&rsaquo; <a href="{% url opts|admin_urlname:'changelist' %}">
  {{ opts.verbose_name_plural|capfirst }}</a>
&rsaquo; {{ title }}</div>{% endblock %}
{% block content %}
<p>Erasing destroys each subject's data key. The personal data of <strong>every</strong>
decision of these {{ subject_count }} subject{{ subject_count|pluralize }} in their AI system,
not only of the selected ones, can no longer be read:
{{ decision_count }} decision{{ decision_count|pluralize }} in all. The decisions, their entries
and receipts stay and keep verifying; each erasure is itself an entry of the log.
This cannot be undone.</p>
<ul>{% for subject in subjects %}
<li>{{ subject }}: {{ subject.decision_total }} decision{{ subject.decision_total|pluralize }}
{% if subject.wrapped_key is None %}(erased already: nothing to do){% endif %}</li>
{% endfor %}{% if more %}<li>and {{ more }} more</li>{% endif %}</ul>
<form method="post">{% csrf_token %}
{{ form.as_p }}
{% for pk in selected %}
  <input type="hidden" name="{{ action_checkbox_name }}" value="{{ pk }}">{% endfor %}
<input type="hidden" name="select_across" value="{{ select_across }}">
<input type="hidden" name="action" value="erase_subjects">
<input type="hidden" name="post" value="yes">
<input type="submit" value="Yes, erase their personal data">
<a href="{% url opts|admin_urlname:'changelist' %}" class="button cancel-link">No, take me back</a>
</form>
{% endblock %}"""
)


class EraseForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Why, e.g. the request this answers. Kept with the erasure; the log holds only "
        "a salted commitment to it.",
    )


def entry_admin_link(entry: Entry | None) -> str:
    """The entry's id, linked to its admin page for staff who may read the log."""
    return admin_link(entry, entry.uuid) if entry is not None else "-"


def decision_label(decision: Decision) -> str:
    """How the admin names a decision: its client id while readable (it is personal data, so
    only its subject's key opens it), else that it was erased."""
    return decision_client_id(decision) or f"(erased) {decision.pk}"


class ClientIdSearchMixin:
    """The admin's search box finds rows by the exact client decision id of their decision,
    stored only as a keyed hash: the term is hashed, never compared in clear."""

    decision_path = ""  # "" for a Decision admin, "decision__" for rows that name one
    search_help_text = "The exact client decision id (it is stored only as a keyed hash)."

    search_fields: tuple[str, ...] = ()  # the admin's own, searched as Django does, besides

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        # Never empty, so that the box shows; the hash itself is never searched as text.
        return tuple(self.search_fields) or (f"{self.decision_path}client_id_lookup",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        found = decisions_by_client_id_search(
            queryset=queryset, term=search_term, decision_path=self.decision_path
        )
        if not self.search_fields or not search_term.strip():
            return found, False
        others, duplicates = super().get_search_results(  # type: ignore[misc]
            request, queryset, search_term
        )
        return found | others, duplicates


class ReadOnlyAdmin(ReadOnlyAdminMixin, PermittedLinksAdmin):
    """Rows recorded together with their entries: the log is their history, so the admin shows
    them and changes nothing."""

    show_full_result_count = False


class APIKeyFormSet(BaseInlineFormSet):
    """New keys get their secret here: it is stored hashed and shown once, in a message."""

    request: HttpRequest

    def save_new(self, form: forms.ModelForm, commit: bool = True) -> SystemAPIKey:
        api_key = super().save_new(form, commit=False)
        key = SystemAPIKey.objects.assign_key(api_key)
        api_key.save()
        messages.warning(
            self.request,
            f"The new API key {api_key.name!r} of {api_key.system} is {key} — copy it now: "
            "it is stored hashed and will not be shown again.",
        )
        return api_key


class SystemAPIKeyInline(admin.TabularInline):
    model = SystemAPIKey
    formset = APIKeyFormSet
    extra = 0
    fields = ("name", "prefix", "created", "expiry_date", "revoked")
    readonly_fields = ("prefix", "created")
    # Revoke instead: the key's row says who could write as the system, and when.
    can_delete = False
    verbose_name_plural = "API keys (a new key is shown once, after saving)"

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        formset.request = request
        return formset


@admin.register(AISystem)
class AISystemAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "risk_level", "is_public", "retention_days", "store_documents")
    list_filter = ("risk_level", "is_public")
    search_fields = ("name", "slug")
    filter_horizontal = ("owners",)
    inlines = [SystemAPIKeyInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AISystem]:
        return scoped(super().get_queryset(request), request.user, "pk")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Every entry the system wrote names it by its slug (audit/access.py reads it back).
        return ("slug",) if obj is not None else ()

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> dict[str, Any]:
        return {} if obj is not None else {"slug": ("name",)}

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # The export itself is the API endpoint, which checks the permission again.
        context = {**(extra_context or {}), "may_export": request.user.has_perm(EXPORT_PERMISSION)}
        return super().change_view(request, object_id, form_url, context)


@admin.register(SystemAPIKey)
class SystemAPIKeyAdmin(APIKeyModelAdmin):
    list_display = (*APIKeyModelAdmin.list_display, "system")
    list_filter = ("system", "revoked", "created")
    list_select_related = ("system",)
    search_fields = ("name", "prefix", "system__slug")
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = tuple(super().get_readonly_fields(request, obj))
        # Moving a key would let it write as another system.
        return (*fields, "system") if obj is not None else fields

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(permissions=["change"], description="Revoke the selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[SystemAPIKey]) -> None:
        count = queryset.filter(revoked=False).update(revoked=True)
        self.message_user(request, f"Revoked {count} API key{'s' if count != 1 else ''}.")


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "system", "declared", "registered_at")
    list_filter = (("system", RELATED),)
    list_select_related = ("system",)
    search_fields = ("name", "version")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelVersion]:
        return scoped(super().get_queryset(request), request.user, "system")

    fields = readonly_fields = (
        "system",
        "name",
        "version",
        "declared",
        "artefact_sha256",
        "training_data_description",
        "training_data_sha256",
        "registered_at",
        "entry_link",
    )

    @admin.display(boolean=True, description="declared")
    def declared(self, version: ModelVersion) -> bool:
        return version.declared

    @admin.display(description="entry")
    def entry_link(self, version: ModelVersion) -> str:
        return entry_admin_link(version.entry)


@admin.register(Subject)
class SubjectAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "system", "key_held", "erased_at")
    list_filter = (("system", RELATED), ("erased_at", admin.EmptyFieldListFilter))
    list_select_related = ("system",)
    fields = readonly_fields = (
        "system",
        "decision_total",
        "key_held",
        "erased_at",
        "erasure_entry_link",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Subject]:
        return scoped(super().get_queryset(request), request.user, "system")

    @admin.display(description="decisions")
    def decision_total(self, subject: Subject) -> int:
        return subject.decisions.count()

    @admin.display(boolean=True, description="data key held")
    def key_held(self, subject: Subject) -> bool:
        return subject.wrapped_key is not None

    @admin.display(description="last erasure entry")
    def erasure_entry_link(self, subject: Subject) -> str:
        return entry_admin_link(subject.erasure_entry)


@admin.register(Decision)
class DecisionAdmin(ClientIdSearchMixin, ReadOnlyAdmin):
    list_display = (
        "client_id_column",
        "system",
        "model_version",
        "solely_automated",
        "received_at",
        "personal_data_state",
    )
    list_filter = (("system", RELATED), ("model_version", RELATED), "solely_automated")
    list_select_related = ("system", "model_version", "subject", "entry")
    actions = ["erase_subjects"]
    fields = readonly_fields = (
        "system",
        "client_id_column",
        "model_version",
        "supersedes",
        "occurred_at",
        "received_at",
        "output",
        "confidence",
        "threshold",
        "solely_automated",
        "subject_link",
        "personal_data_state",
        "entry_link",
        "receipt",
        "subject_page",
    )

    @admin.display(description="client decision id")
    def client_id_column(self, decision: Decision) -> str:
        return decision_label(decision)

    @admin.display(description="personal data")
    def personal_data_state(self, decision: Decision) -> str:
        if decision_erased(decision):
            return f"erased {decision.subject.erased_at:%Y-%m-%d %H:%M} UTC"
        return "held, encrypted"

    @admin.display(description="subject")
    def subject_link(self, decision: Decision) -> str:
        return admin_link(decision.subject)

    @admin.display(description="entry")
    def entry_link(self, decision: Decision) -> str:
        return entry_admin_link(decision.entry)

    @admin.display(description="receipt")
    def receipt(self, decision: Decision) -> str:
        url = reverse("entry-receipt", kwargs={"entry_id": decision.entry.uuid})
        return format_html('<a href="{}">{}</a>', url, url)

    @admin.display(description="the subject's page")
    def subject_page(self, decision: Decision) -> str:
        url = reverse("decision-subject", kwargs={"token": decision.subject_token})
        return format_html('<a href="{}" rel="noreferrer">open</a>', url)

    def has_erase_subject_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ERASE_PERMISSION)

    @admin.action(
        permissions=["erase_subject"],
        description="Erase the personal data of these decisions' subjects",
    )
    def erase_subjects(
        self, request: HttpRequest, queryset: QuerySet[Decision]
    ) -> HttpResponse | None:
        subject_ids = queryset.values("subject_id").distinct()
        subjects = Subject.objects.filter(pk__in=subject_ids).order_by("pk")
        form = EraseForm(request.POST if request.POST.get("post") else None)
        if form.is_valid():
            erased = decisions = 0
            for subject in subjects:
                erasure = subject_erase(
                    subject=subject,
                    reason=Erasure.Reason.REQUEST,
                    note=form.cleaned_data["reason"],
                    erased_by=request.user,
                )
                if erasure is not None:
                    erased += 1
                    decisions += erasure.decisions
            self.message_user(
                request,
                f"Erased the personal data of {erased} subject{'s' if erased != 1 else ''} "
                f"({decisions} decision{'s' if decisions != 1 else ''}); "
                "each erasure is an entry of the log.",
                messages.SUCCESS,
            )
            return None
        subject_count = subjects.count()
        listed = subjects.select_related("system").annotate(decision_total=Count("decisions"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Erase personal data",
            "subjects": listed[:SUBJECTS_LISTED],
            "more": max(subject_count - SUBJECTS_LISTED, 0),
            "subject_count": subject_count,
            "decision_count": Decision.objects.filter(subject__in=subjects).count(),
            "form": form,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, ERASE_CONFIRMATION, context)


@admin.register(Outcome)
class OutcomeAdmin(ClientIdSearchMixin, ReadOnlyAdmin):
    list_display = ("decision", "observed_at")
    list_filter = (("decision__system", RELATED),)
    list_select_related = ("decision__system",)
    fields = readonly_fields = ("decision", "actual", "observed_at", "entry_link")
    decision_path = "decision__"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Outcome]:
        return scoped(super().get_queryset(request), request.user, "decision__system")

    @admin.display(description="entry")
    def entry_link(self, outcome: Outcome) -> str:
        return entry_admin_link(outcome.entry)


@admin.register(Document)
class DocumentAdmin(ReadOnlyAdmin):
    list_display = ("sha256", "system", "private", "size", "stored", "registered_at")
    list_filter = (("system", RELATED), "private")
    list_select_related = ("system",)
    search_fields = ("=sha256",)
    fields = readonly_fields = (
        "system",
        "sha256",
        "size",
        "media_type",
        "private",
        "stored_file",
        "registered_at",
        "entry_link",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        return scoped(super().get_queryset(request), request.user, "system")

    @admin.display(boolean=True, description="file stored")
    def stored(self, document: Document) -> bool:
        return bool(document.file)

    @admin.display(description="stored file")
    def stored_file(self, document: Document) -> str:
        return document.file.name if document.file else "-"

    @admin.display(description="entry")
    def entry_link(self, document: Document) -> str:
        return entry_admin_link(document.entry)


@admin.register(Erasure)
class ErasureAdmin(ReadOnlyAdmin):
    list_display = ("erased_at", "system", "reason", "subject", "document", "decisions")
    list_filter = (("system", RELATED), "reason")
    list_select_related = ("system", "subject__system", "document__system")
    fields = readonly_fields = (
        "system",
        "reason",
        "subject",
        "document",
        "decisions",
        "decisions_opening",
        "note",
        "erased_by",
        "erased_at",
        "entry_link",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Erasure]:
        return scoped(super().get_queryset(request), request.user, "system")

    @admin.display(description="entry")
    def entry_link(self, erasure: Erasure) -> str:
        return entry_admin_link(erasure.entry)

    @admin.display(description="opening of the decisions commitment")
    def decisions_opening(self, erasure: Erasure) -> str:
        """What checks the leaf's decisions_commitment (docs/receipts.md): give it to whoever
        may know which decisions were this person's, and only to them."""
        if erasure.decisions_salt is None:
            return "-"
        opening = erasure_decisions_opening(erasure=erasure)
        return format_html("<pre>{}</pre>", json.dumps(opening, indent=1))
