from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from app.fine_tuning.directory import FineTunedDirectory
from app.fine_tuning.service import FineTuning
from app.kit.pagination import PageParams


async def get_fine_tuning(request: Request) -> FineTuning:
    service: FineTuning = request.app.state.fine_tuning
    return service


async def get_directory(request: Request) -> FineTunedDirectory:
    directory: FineTunedDirectory = request.app.state.fine_tuned_models
    return directory


async def job_page(limit: Annotated[int, Query(ge=1, le=100)] = 20, after: str | None = None) -> PageParams:
    """OpenAI's job list: newest first, paged by ``after``."""
    return PageParams(limit=limit, order="desc", after=after)


FineTuningDep = Annotated[FineTuning, Depends(get_fine_tuning)]
DirectoryDep = Annotated[FineTunedDirectory, Depends(get_directory)]
JobPage = Annotated[PageParams, Depends(job_page)]
