"""The fine-tune check of files on their way in, through ``POST /v1/files`` (while the form
streams to upstream) or an Upload (read back from upstream once it is complete)."""

from __future__ import annotations

import anyio

from app.config import FineTuningSettings
from app.errors import InvalidRequest
from app.fine_tuning.validation import FileProblem, FileStats, FineTuneValidator

FINE_TUNE = "fine-tune"


# Parsing and counting take about 0.1 ms per KiB (about 10 MB/s); a piece larger than this is
# checked in a worker thread so that a large upload does not hold the event loop.
_INLINE_BYTES = 8 * 1024


async def feed(validator: FineTuneValidator, data: bytes) -> FileProblem | None:
    if len(data) <= _INLINE_BYTES or validator.problem is not None:
        return validator.feed(data)
    return await anyio.to_thread.run_sync(validator.feed, data)


def invalid_file(problem: FileProblem) -> InvalidRequest:
    return InvalidRequest(problem.message, param="file", code=problem.check)


def new_validator(settings: FineTuningSettings) -> FineTuneValidator:
    """Checked against the longest example any fine-tunable model takes: the model is not known
    until a job is created, which checks the file's longest example against that model's limit."""
    longest = max(m.max_example_tokens for m in settings.tunable.values())
    return FineTuneValidator(max_example_tokens=longest, min_examples=settings.min_examples)


class FineTuneFormCheck:
    """A ``FormInspector`` for ``POST /v1/files``. The form's ``purpose`` may come before or after
    its file: until it is known, the file is checked anyway (the check stops at the first bad
    line), and the verdict applies once the purpose says ``fine-tune``. Raising stops the body
    before its closing boundary, so upstream never receives a complete (storable) file."""

    def __init__(self, settings: FineTuningSettings) -> None:
        self.validator = new_validator(settings)
        self.purpose: str | None = None
        self.stats: FileStats | None = None

    def on_field(self, name: str, value: str) -> None:
        if name != "purpose":
            return
        self.purpose = value
        if value == FINE_TUNE and self.validator.problem is not None:
            raise invalid_file(self.validator.problem)

    async def on_file_data(self, data: bytes) -> None:
        if self.purpose not in (None, FINE_TUNE):
            return
        problem = await feed(self.validator, data)
        if problem is not None and self.purpose == FINE_TUNE:
            raise invalid_file(problem)

    def on_body_end(self) -> None:
        if self.purpose != FINE_TUNE:
            return
        result = self.validator.finish()
        if isinstance(result, FileProblem):
            raise invalid_file(result)
        self.stats = result
