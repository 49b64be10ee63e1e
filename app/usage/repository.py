from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.kit.repository import RepositoryBase
from app.models import UsageRecord


class UsageRepository(RepositoryBase[UsageRecord]):
    model = UsageRecord

    async def insert_once(self, values: dict[str, object]) -> None:
        """A retried settlement, or one racing the reaper, must not write a second row."""
        insert = pg_insert if self.session.get_bind().dialect.name == "postgresql" else sqlite_insert
        statement = insert(UsageRecord).values(**values).on_conflict_do_nothing(index_elements=["request_id"])
        await self.session.execute(statement)

    async def insert_new(self, values: dict[str, object]) -> bool:
        """``insert_once`` that says whether this call wrote the row: a charge that must happen
        once per request id (storage per store per day) is applied only by the writer."""
        insert = pg_insert if self.session.get_bind().dialect.name == "postgresql" else sqlite_insert
        statement = (
            insert(UsageRecord)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["request_id"])
            .returning(UsageRecord.id)
        )
        return (await self.session.execute(statement)).first() is not None
