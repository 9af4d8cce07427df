"""Root URLs: the portal (home page included), the API, its schema and docs, the admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from audit.views import decision_subject, decision_subject_receipt
from timestamping.urls import public_urlpatterns

urlpatterns = [
    path("", include("portal.urls")),
    path("", include("review.urls")),
    path("", include("bias.urls")),
    path("", include(public_urlpatterns)),
    path("api/v1/", include("timestamping.urls")),
    path("api/v1/", include("audit.urls")),
    path("d/<str:token>", decision_subject, name="decision-subject"),
    path(
        "d/<str:token>/receipts/<uuid:entry_id>",
        decision_subject_receipt,
        name="decision-subject-receipt",
    ),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]

handler404 = "veridict.api_errors.not_found"
