"""URLs of the log's read API, mounted under /api/v1/."""

from django.urls import path

from timestamping import api

urlpatterns = [
    path("log/checkpoint", api.CheckpointView.as_view(), name="log-checkpoint"),
    path("log/keys", api.KeysView.as_view(), name="log-keys"),
    path("log/batches/<int:number>", api.BatchView.as_view(), name="log-batch"),
    path("log/proof/inclusion", api.InclusionProofView.as_view(), name="log-proof-inclusion"),
    path("log/proof/consistency", api.ConsistencyProofView.as_view(), name="log-proof-consistency"),
    path("entries/<str:entry_id>/receipt", api.ReceiptView.as_view(), name="entry-receipt"),
]
