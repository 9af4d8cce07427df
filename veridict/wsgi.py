"""WSGI entry point (gunicorn veridict.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veridict.settings")
application = get_wsgi_application()
