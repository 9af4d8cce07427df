"""URLs of the log's read API, mounted under /api/v1/."""

from django.urls import path

from timestamping import api, metrics, tsa_api

# This instance's TSA and its metrics, mounted at the site root by veridict/urls.py.
public_urlpatterns = [
    path("tsa", tsa_api.TimestampView.as_view(), name="tsa"),
    path("tsa/ca.pem", tsa_api.TSACertificateView.as_view(), name="tsa-ca"),
    path("metrics", metrics.MetricsView.as_view(), name="metrics"),
]

urlpatterns = [
    path("log/checkpoint", api.CheckpointView.as_view(), name="log-checkpoint"),
    path("log/keys", api.KeysView.as_view(), name="log-keys"),
    path("log/batches/<int:number>", api.BatchView.as_view(), name="log-batch"),
    path("log/proof/inclusion", api.InclusionProofView.as_view(), name="log-proof-inclusion"),
    path("log/proof/consistency", api.ConsistencyProofView.as_view(), name="log-proof-consistency"),
    path("entries/<str:entry_id>/receipt", api.ReceiptView.as_view(), name="entry-receipt"),
]
