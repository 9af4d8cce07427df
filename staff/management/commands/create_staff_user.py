"""`manage.py create_staff_user <username> --role reviewer`: a staff account in one role."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from staff.roles import ROLES
from staff.services import staff_user_create


class Command(BaseCommand):
    help = (
        "Creates a staff account in one role (a Django group). It has no usable password until "
        "you set one with `manage.py changepassword <username>`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=sorted(ROLES))
        parser.add_argument("--email", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = staff_user_create(
                username=options["username"], role=options["role"], email=options["email"]
            )
        except IntegrityError as exc:
            raise CommandError(f"a user named {options['username']!r} exists already") from exc
        self.stdout.write(
            f"Created {user.get_username()} ({options['role']}). "
            f"Set a password: manage.py changepassword {user.get_username()}"
        )
