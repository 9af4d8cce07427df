"""Erasure on request (GDPR Art. 17): staff erase a subject's personal data, logged in as people."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import AISystem, Erasure
from audit.serializers import StrictSerializer
from audit.services.subjects import erasure_latest, subject_by_reference, subject_erase
from timestamping.api import BAD_REQUEST, ErrorSerializer

ERASE_PERMISSION = "audit.erase_subject"


class CanEraseSubjects(BasePermission):
    message = f"erasing needs a staff login with the {ERASE_PERMISSION} permission"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(
            user and user.is_authenticated and user.is_staff and user.has_perm(ERASE_PERMISSION)
        )


class SubjectEraseSerializer(StrictSerializer):
    system = serializers.SlugField(help_text="The AI system's slug.")
    subject_ref = serializers.CharField(
        max_length=500, help_text="The AI system's reference for the person, as it sent it."
    )
    reason = serializers.CharField(
        max_length=2000,
        help_text="Why, e.g. the request it answers. Kept with the erasure; the log holds only "
        "a salted commitment to it.",
    )


class SubjectErasedSerializer(serializers.Serializer):
    erasure_entry = serializers.UUIDField(help_text="The erasure's entry in the log.")
    decisions = serializers.IntegerField(help_text="How many decisions the erasure names.")
    erased_at = serializers.DateTimeField()


class SubjectEraseView(APIView):
    # A session, never an API key: an AI system must not erase what it reported. DRF's session
    # authentication enforces CSRF for logged-in users.
    authentication_classes = [SessionAuthentication]
    permission_classes = [CanEraseSubjects]
    throttle_classes: list[Any] = []

    @extend_schema(
        summary="Erase a subject's personal data (staff session with CSRF token)",
        description="Destroys the subject's data key: its decisions stay in the log and their "
        "receipts keep verifying, but their personal data no longer decrypts. The erasure is an "
        "entry naming the decisions. Asking again answers the same erasure.",
        request=SubjectEraseSerializer,
        examples=[
            OpenApiExample(
                "A person's request",
                value={
                    "system": "loan-scorer",
                    "subject_ref": "applicant-88231",
                    "reason": "erasure request of 2026-11-20",
                },
                request_only=True,
            )
        ],
        responses={
            200: SubjectErasedSerializer,
            400: BAD_REQUEST,
            403: OpenApiResponse(
                ErrorSerializer, description="Not logged in, no CSRF token, or no permission."
            ),
            404: OpenApiResponse(ErrorSerializer, description="No such system or subject."),
        },
    )
    def post(self, request: Request) -> Response:
        incoming = SubjectEraseSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        system = AISystem.objects.filter(slug=data["system"]).first()
        if system is None:
            raise NotFound({"system": [f"no AI system {data['system']!r}"]})
        subject = subject_by_reference(system=system, reference=data["subject_ref"])
        if subject is None:
            raise NotFound({"subject_ref": ["no subject with this reference in this AI system"]})
        erasure = subject_erase(
            subject=subject,
            reason=Erasure.Reason.REQUEST,
            note=data["reason"],
            erased_by=request.user,
        ) or erasure_latest(subject=subject)
        if erasure is None:  # erased outside subject_erase: nothing recorded to answer with
            raise NotFound({"subject_ref": ["this subject was erased without an erasure entry"]})
        return Response(
            {
                "erasure_entry": str(erasure.entry.uuid),
                "decisions": erasure.decisions,
                "erased_at": erasure.erased_at,
            }
        )
