"""URLs of the portal app, mounted at the site root."""

from django.urls import path, re_path

from portal import views, views_verify

urlpatterns = [
    path("", views.home, name="home"),
    path("documents/", views.document_search, name="portal-document-search"),
    path("documents/<str:sha256>", views.document, name="portal-document"),
    path("log/", views.log_index, name="portal-log"),
    path("log/batches/<int:number>", views.batch, name="portal-batch"),
    # The signed note, or its body alone: the `-data` file of `openssl ts -verify`.
    re_path(
        r"^log/batches/(?P<number>[0-9]+)/(?P<part>checkpoint|body)\.txt$",
        views.batch_checkpoint,
        name="portal-batch-note",
    ),
    path(
        "log/batches/<int:number>/anchors/<slug:backend>.tsr",
        views.anchor_tsr,
        name="portal-anchor-tsr",
    ),
    path("log/entries/<str:entry_id>", views.entry, name="portal-entry"),
    path("verify/receipt", views_verify.verify_receipt, name="verify-receipt"),
    path("keys/", views.keys_page, name="portal-keys"),
    path("keys/check-yourself", views.check_yourself, name="portal-check-yourself"),
    re_path(
        r"^keys/(?P<filename>veridict_verify-[0-9A-Za-z.+-]+\.tar\.gz)$",
        views.verifier_download,
        name="portal-verifier-download",
    ),
]
