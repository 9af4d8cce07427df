"""URLs of the bias app: the report API (the dashboard's pages are added here too)."""

from django.urls import path

from bias import api, views

urlpatterns = [
    path("api/v1/bias/report", api.BiasReportView.as_view(), name="bias-report"),
    # The dashboard's pages ("dashboard" helper); audits/ before <slug>/, which would take it.
    path("bias/", views.bias_index, name="bias-index"),
    path("bias/audits/<int:audit_id>", views.audit_published, name="bias-audit"),
    path(
        "bias/audits/<int:audit_id>/report.json",
        views.audit_report_download,
        name="bias-audit-report",
    ),
    path(
        "bias/audits/<int:audit_id>/receipt.json",
        views.audit_receipt_download,
        name="bias-audit-receipt",
    ),
    path("bias/<slug:slug>/", views.bias_dashboard, name="bias-dashboard"),
    path("bias/<slug:slug>/summary", views.bias_summary, name="bias-summary"),
    path("bias/<slug:slug>/publish", views.bias_publish, name="bias-publish"),
]
