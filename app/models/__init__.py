"""Every ORM model, re-exported: the one import Alembic needs."""

from app.models.api_key import ApiKey
from app.models.assistant import Assistant
from app.models.base import Base
from app.models.budget import Budget
from app.models.budget_lease import BudgetLease
from app.models.conversation import Conversation
from app.models.file import File
from app.models.rate_limit import RateLimit
from app.models.response_record import ResponseRecord
from app.models.team import Team
from app.models.thread import Thread
from app.models.thread_message import ThreadMessage
from app.models.thread_run import ThreadRun
from app.models.upload import Upload
from app.models.upstream_target import UpstreamTargetRow
from app.models.usage_record import UsageRecord
from app.models.usage_rollup import UsageRollup
from app.models.user import User

__all__ = [
    "ApiKey",
    "Assistant",
    "Base",
    "Budget",
    "BudgetLease",
    "Conversation",
    "File",
    "RateLimit",
    "ResponseRecord",
    "Team",
    "Thread",
    "ThreadMessage",
    "ThreadRun",
    "Upload",
    "UpstreamTargetRow",
    "UsageRecord",
    "UsageRollup",
    "User",
]
