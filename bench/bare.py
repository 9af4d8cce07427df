"""The ceiling of bench/single.py: a bare DRF endpoint, no authentication, inserting one row.

Served by gunicorn as `bench.bare:application`, with the product's settings (middleware, parser,
renderer, database) and only this URLconf, so that what it costs is the framework and one insert.
It never ships: nothing in veridict/ or audit/ imports it.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.db import connection
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

# Importing bench sets Django up against the bench database, as the product server is.
from bench.single import BARE_TABLE as TABLE


class BareView(APIView):
    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    throttle_classes: list[type] = []

    def post(self, request: Request) -> Response:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {TABLE} (body) VALUES (%s) RETURNING id",  # noqa: S608
                [json.dumps(request.data)],
            )
            (row_id,) = cursor.fetchone()
        return Response({"id": row_id}, status=201)


urlpatterns = [path("bare", BareView.as_view())]

# Read per request by Django's handler, so setting it before the first request is enough.
settings.ROOT_URLCONF = __name__
application = get_wsgi_application()
