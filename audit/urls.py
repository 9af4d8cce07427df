"""URLs of the ingestion API, mounted under /api/v1/."""

from django.urls import path

from audit import api

urlpatterns = [
    path("decisions", api.DecisionListView.as_view(), name="decisions"),
    path("decisions/<str:decision_id>", api.DecisionDetailView.as_view(), name="decision-detail"),
    path("decisions/<str:decision_id>/outcome", api.OutcomeView.as_view(), name="decision-outcome"),
    path("model-versions", api.ModelVersionView.as_view(), name="model-versions"),
]
