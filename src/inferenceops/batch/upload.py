"""One ``POST /v1/files`` body, streamed: the form's fields read, its file checked and written.

The body arrives in chunks (``chunks``); the multipart parser turns them into parts.
The ``file`` part goes straight to a ``PartialFile`` and through the batch line checker
as it arrives; the small fields (``purpose``, and any other the SDK adds) are kept, up
to ``MAX_FIELD_BYTES`` each. Nothing is held whole.

Refusals, each an ``InferenceOpsError`` naming the parameter: a file past
``limits.max_bytes`` (413, ``file``), too many requests or a broken line (400, ``file``,
the line named), a missing or unknown ``purpose`` (400, ``purpose``), no ``file`` part, an
``expires_after`` OpenAI would refuse (400 naming ``expires_after[anchor]`` or ``[seconds]``).
On any refusal — and when the client leaves mid-upload — the partial file is deleted
before the error propagates: nothing partial is ever left in the files folder.

Only ``purpose=batch`` is accepted: nothing in the platform uses files of OpenAI's other
purposes (fine-tuning, assistants, …), and storing what nothing reads would only fill the
shared disk; those purposes get a 400 that says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from inferenceops.batch.file_lines import LineChecker
from inferenceops.batch.files import FileStore, PartialFile
from inferenceops.batch.multipart import MultipartParser, PartData, PartEnd, PartStart
from inferenceops.errors import InvalidParameter, InvalidRequest, PayloadTooLarge

ACCEPTED_PURPOSES = ("batch",)
#: OpenAI's other upload purposes: named so their refusal can say "not supported here".
OTHER_OPENAI_PURPOSES = ("assistants", "fine-tune", "vision", "user_data", "evals")
MAX_FIELD_BYTES = 1024
MAX_PARTS = 16
MAX_FILENAME_CHARS = 255


@dataclass(frozen=True, slots=True)
class FileLimits:
    max_bytes: int
    max_lines: int
    max_line_bytes: int


@dataclass(frozen=True, slots=True)
class Received:
    """A whole, checked upload still in ``.partial/``: commit or discard ``partial``."""

    partial: PartialFile
    purpose: str
    filename: str
    line_count: int
    #: ``expires_after[seconds]`` when the form set an expiry (anchored at creation).
    expires_after_s: int | None = None


#: OpenAI's bounds for ``expires_after[seconds]``: an hour to 30 days.
MIN_EXPIRY_S, MAX_EXPIRY_S = 3600, 2_592_000
_ANCHOR, _SECONDS = "expires_after[anchor]", "expires_after[seconds]"


def expires_after(fields: dict[str, str]) -> int | None:
    """The form's ``expires_after[anchor]`` and ``expires_after[seconds]``, checked: both or
    neither, the anchor ``created_at``, the seconds a whole number within OpenAI's bounds."""
    anchor, seconds = fields.get(_ANCHOR), fields.get(_SECONDS)
    if anchor is None and seconds is None:
        return None
    if anchor is None or seconds is None:
        raise InvalidParameter("expires_after needs both expires_after[anchor] and "
                               "expires_after[seconds].", param="expires_after")
    if anchor != "created_at":
        raise InvalidParameter(f"expires_after[anchor] must be 'created_at', not {anchor[:64]!r}.",
                               param=_ANCHOR)
    if not seconds.isascii() or not seconds.isdigit() or not \
            MIN_EXPIRY_S <= int(seconds) <= MAX_EXPIRY_S:
        raise InvalidParameter(f"expires_after[seconds] must be a whole number of seconds from "
                               f"{MIN_EXPIRY_S} to {MAX_EXPIRY_S}, not {seconds[:64]!r}.",
                               param=_SECONDS)
    return int(seconds)


def check_purpose(purpose: str) -> str:
    if purpose in ACCEPTED_PURPOSES:
        return purpose
    if purpose in OTHER_OPENAI_PURPOSES:
        raise InvalidParameter(f"Files with purpose {purpose!r} are not supported by this "
                               "gateway; upload batch input with purpose 'batch'.",
                               param="purpose")
    raise InvalidParameter(f"Invalid purpose {purpose[:64]!r}: use 'batch'.", param="purpose")


class _Form:
    """The state of one form being read: its fields, its file, the part now open."""

    def __init__(self, store: FileStore, limits: FileLimits) -> None:
        self.store = store
        self.limits = limits
        self.fields: dict[str, str] = {}
        self.partial: PartialFile | None = None
        self.filename = ""
        self.checker = LineChecker(max_lines=limits.max_lines,
                                   max_line_bytes=limits.max_line_bytes)
        self.line_count: int | None = None
        self.parts = 0
        self._open: str | None = None  # the open part's name ("file" for the file)
        self._value = bytearray()

    async def start(self, part: PartStart) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise InvalidRequest(f"The form has more than {MAX_PARTS} parts.",
                                 code="invalid_multipart")
        if part.name == "file":
            if self.partial is not None or self.line_count is not None:
                raise InvalidParameter("The form has more than one 'file'.", param="file")
            self.filename = (part.filename or "file.jsonl")[:MAX_FILENAME_CHARS]
            self.partial = await self.store.begin()
        self._open = part.name
        self._value.clear()

    async def data(self, data: bytes) -> None:
        if self._open == "file":
            assert self.partial is not None
            if self.partial.size + len(data) > self.limits.max_bytes:
                raise PayloadTooLarge(f"The file is larger than the limit of "
                                      f"{self.limits.max_bytes} bytes.", param="file")
            self.checker.feed(data)
            await self.partial.write(data)
            return
        self._value += data
        if len(self._value) > MAX_FIELD_BYTES:
            raise InvalidParameter(f"The form field {str(self._open)[:64]!r} is longer than "
                                   f"{MAX_FIELD_BYTES} bytes.", param=self._open)

    def end(self) -> None:
        name, self._open = self._open, None
        if name == "file":
            self.line_count = self.checker.finish()
            return
        assert name is not None
        try:
            value = self._value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidParameter(f"The form field {name[:64]!r} is not UTF-8 text.",
                                   param=name) from None
        self.fields.setdefault(name, value.strip())
        if name == "purpose":
            check_purpose(self.fields["purpose"])  # before the file, if it comes first


async def receive_upload(chunks: AsyncIterator[bytes], boundary: bytes, store: FileStore,
                         limits: FileLimits) -> Received:
    """Read the whole form from ``chunks`` (see the module doc)."""
    parser = MultipartParser(boundary)
    form = _Form(store, limits)
    try:
        async for chunk in chunks:
            for event in parser.feed(chunk):
                if isinstance(event, PartStart):
                    await form.start(event)
                elif isinstance(event, PartData):
                    await form.data(event.data)
                elif isinstance(event, PartEnd):
                    form.end()
            if parser.done:
                break
        parser.close()
        purpose = form.fields.get("purpose")
        if purpose is None:
            raise InvalidParameter("Missing the form field 'purpose' (use 'batch').",
                                   param="purpose")
        if form.partial is None or form.line_count is None:
            raise InvalidParameter("Missing the form field 'file'.", param="file")
        return Received(form.partial, check_purpose(purpose), form.filename, form.line_count,
                        expires_after(form.fields))
    except BaseException:
        if form.partial is not None:
            await form.partial.discard()
        raise
