"""URLs of the ingestion API, mounted under /api/v1/."""

from django.urls import path

from audit import api, api_bulk, api_documents, api_evidence, api_subjects

urlpatterns = [
    path("decisions", api.DecisionListView.as_view(), name="decisions"),
    # Before the detail route, which would take "bulk" for a decision id.
    path("decisions/bulk", api_bulk.DecisionBulkView.as_view(), name="decisions-bulk"),
    path("decisions/<str:decision_id>", api.DecisionDetailView.as_view(), name="decision-detail"),
    path("decisions/<str:decision_id>/outcome", api.OutcomeView.as_view(), name="decision-outcome"),
    path("model-versions", api.ModelVersionView.as_view(), name="model-versions"),
    path("documents", api_documents.DocumentView.as_view(), name="documents"),
    path(
        "documents/<str:sha256>",
        api_documents.DocumentLookupView.as_view(),
        name="document-lookup",
    ),
    path(
        "systems/<slug:slug>/evidence", api_evidence.EvidenceView.as_view(), name="system-evidence"
    ),
    path("subjects/erase", api_subjects.SubjectEraseView.as_view(), name="subject-erase"),
]
