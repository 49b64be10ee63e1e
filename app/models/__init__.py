"""Every ORM model, re-exported: the one import Alembic needs."""

from app.models.api_key import ApiKey
from app.models.assistant import Assistant
from app.models.audit_event import AuditEvent
from app.models.base import Base
from app.models.batch import Batch
from app.models.budget import Budget
from app.models.budget_lease import BudgetLease
from app.models.conversation import Conversation
from app.models.file import File
from app.models.fine_tuned_model import FineTunedModel, FineTunedModelGrant
from app.models.fine_tuning_job import FineTuningJob
from app.models.rate_limit import RateLimit
from app.models.response_record import ResponseRecord
from app.models.team import Team
from app.models.thread import Thread
from app.models.thread_message import ThreadMessage
from app.models.thread_run import ThreadRun
from app.models.thread_run_step import ThreadRunStep
from app.models.upload import Upload
from app.models.upstream_target import UpstreamTargetRow
from app.models.usage_record import UsageRecord
from app.models.usage_request_id import UsageRequestId
from app.models.usage_rollup import UsageRollup
from app.models.user import User
from app.models.vector_store import VectorStore

__all__ = [
    "ApiKey",
    "Assistant",
    "AuditEvent",
    "Base",
    "Batch",
    "Budget",
    "BudgetLease",
    "Conversation",
    "File",
    "FineTunedModel",
    "FineTunedModelGrant",
    "FineTuningJob",
    "RateLimit",
    "ResponseRecord",
    "Team",
    "Thread",
    "ThreadMessage",
    "ThreadRun",
    "ThreadRunStep",
    "Upload",
    "UpstreamTargetRow",
    "UsageRecord",
    "UsageRequestId",
    "UsageRollup",
    "User",
    "VectorStore",
]
