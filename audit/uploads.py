"""Streaming document uploads: SHA-256 as the bytes arrive, kept on disk only when asked to."""

from __future__ import annotations

import hashlib
import io
import tempfile
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.http.multipartparser import MultiPartParserError
from rest_framework.exceptions import ParseError
from rest_framework.parsers import DataAndFiles, MultiPartParser

from veridict.parsers import PayloadTooLarge

# The multipart parser slows down past 128 KiB pieces (it copies what it looks ahead at for the
# boundary); 64 KiB keeps it near its best while hashing.
CHUNK_SIZE = 64 * 1024
# gunicorn copies what it has buffered beyond each read, so 64 KiB reads from a 1 MiB receive
# cost a megabyte of copying each; reading the body a megabyte at a time avoids that.
BODY_READ_SIZE = 1024 * 1024
# Only this form field is kept: any other file part is hashed and dropped.
KEPT_FIELD = "file"


class HashedUpload(UploadedFile):
    """An uploaded file known by its SHA-256 and size; its bytes sit in a temporary file when
    `kept`, and nowhere otherwise."""

    def __init__(
        self,
        *,
        file: IO[bytes],
        name: str,
        content_type: str | None,
        size: int,
        charset: str | None,
        content_type_extra: dict[str, Any] | None,
        sha256: str,
        kept: bool,
    ) -> None:
        super().__init__(file, name, content_type, size, charset, content_type_extra)
        self.sha256 = sha256
        self.kept = kept

    def temporary_file_path(self) -> str:
        """Lets FileSystemStorage move the temporary file into place instead of copying it."""
        if not self.kept:
            raise ValueError("this upload was hashed and discarded: it has no file")
        return str(self.file.name)

    def close(self) -> None:
        try:
            self.file.close()
        except FileNotFoundError:  # already moved into storage
            pass


class HashingUploadHandler(FileUploadHandler):
    """Hashes every file part chunk by chunk; writes the `file` part to a temporary file only
    when `keep` is true, so an upload the system does not store costs no disk and a few
    chunks of memory, whatever its size."""

    chunk_size = CHUNK_SIZE

    def __init__(self, request: Any = None, *, keep: bool) -> None:
        super().__init__(request)
        self.keep = keep
        self.digest = hashlib.sha256()
        self.size = 0
        self.temporary: IO[bytes] | None = None

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, *args, **kwargs)
        self.digest = hashlib.sha256()
        self.size = 0
        self.temporary = None
        if self.keep and field_name == KEPT_FIELD:
            # Closed (and so deleted) with the upload, or moved into storage.
            self.temporary = tempfile.NamedTemporaryFile(
                suffix=".upload", dir=settings.FILE_UPLOAD_TEMP_DIR
            )

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.digest.update(raw_data)
        self.size += len(raw_data)
        if self.temporary is not None:
            self.temporary.write(raw_data)
        return None  # no later handler sees the chunk: nothing else holds on to it

    def file_complete(self, file_size: int) -> HashedUpload:
        kept = self.temporary is not None
        if self.temporary is not None:
            # Flushed, so that moving the file by its path moves every byte.
            self.temporary.flush()
            self.temporary.seek(0)
        upload = HashedUpload(
            file=self.temporary if self.temporary is not None else io.BytesIO(),
            name=self.file_name or "",
            content_type=self.content_type,
            size=self.size,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
            sha256=self.digest.hexdigest(),
            kept=kept,
        )
        self.temporary = None
        return upload

    def upload_interrupted(self) -> None:
        if self.temporary is not None:
            self.temporary.close()  # a NamedTemporaryFile deletes itself
            self.temporary = None


class _BodyReader(io.RawIOBase):
    """The request body as a raw stream, so that io.BufferedReader reads it in large pieces."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class HashingMultiPartParser(MultiPartParser):
    """DRF's multipart parser with HashingUploadHandler as the only upload handler.

    The view says whether to keep the file (`keeps_uploads(request)`), asked only when the
    body is parsed, that is after authentication.
    """

    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[no-untyped-def]
        parser_context = parser_context or {}
        request = parser_context["request"]
        view = parser_context.get("view")
        keep = bool(view is not None and view.keeps_uploads(request))
        meta = request.META.copy()
        meta["CONTENT_TYPE"] = media_type
        handler = HashingUploadHandler(request, keep=keep)
        body = io.BufferedReader(_BodyReader(stream), buffer_size=BODY_READ_SIZE)
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            try:
                data, files = DjangoMultiPartParser(meta, body, [handler], encoding).parse()
            except BaseException:
                # Django cleans up only after StopUpload; a malformed or cut-off body must not
                # leave a half-written temporary file behind either.
                handler.upload_interrupted()
                raise
        except MultiPartParserError as exc:
            raise ParseError(f"malformed multipart body: {exc}") from exc
        except RequestDataTooBig as exc:
            raise PayloadTooLarge(
                "the form fields beside the file are larger than the limit"
            ) from exc
        except (TooManyFieldsSent, TooManyFilesSent) as exc:
            raise ParseError(str(exc)) from exc
        return DataAndFiles(data, files)
