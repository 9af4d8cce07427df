"""Test settings: the development defaults that production refuses to assume.

Production is the default of veridict.settings (DEBUG off, no secret key, no start); the tests run
as a development instance, with a throwaway secret key that the processes they start inherit.
"""

from __future__ import annotations

import os
import secrets

os.environ.setdefault("DJANGO_DEBUG", "true")
os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))

from veridict.settings import *  # noqa: E402, F403
