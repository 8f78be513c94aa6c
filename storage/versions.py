"""A write to a catalogue table moves the school's ``catalogue_version`` on, in its transaction.

Processes cache each school's programme (`bot.services.catalogue`) and compare the version the
loader reads with the member. So a change must move the version whoever makes it: an import, a
cancelled course, an admin command, another process, a test's own ``UPDATE``. These hooks sit
on `KehouSession`, the session class of every `storage.db.Database`:

- an ORM flush that adds, changes or deletes a school, term, calendar day, course, teacher,
  provider or fee standard marks that school;
- a bulk ``INSERT``/``UPDATE``/``DELETE`` on one of those tables marks every school (its rows
  are not known without reading them; such statements are rare and come from imports);
- just before the commit, one ``UPDATE schools`` moves the marked schools' versions on, and
  this process's cached copies are dropped.

A statement that touches a source table without changing what the catalogue shows (the no-op
``UPDATE`` that takes SQLite's write lock) says so with
``.execution_options(catalogue_unchanged=True)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, event, update
from sqlalchemy.orm import ORMExecuteState, Session

from storage.models import CalendarDay, Course, FeeStandard, Provider, School, Teacher, Term

#: Where a Database keeps its processes' cached catalogues, in ``Session.info``.
CACHES = "kehou.catalogues"
_DIRTY = "kehou.catalogue_dirty"  # school ids changed in this transaction (ALL: unknown)
ALL = 0

SOURCES: tuple[type[Any], ...] = (
    School,
    Term,
    CalendarDay,
    Course,
    Teacher,
    Provider,
    FeeStandard,
)
_SOURCE_TABLES = {model.__table__ for model in SOURCES}


class KehouSession(Session):
    """The session class of every `storage.db.Database`: tracks catalogue changes."""


def _touch(session: Session, school_ids: Iterable[int]) -> None:
    session.info.setdefault(_DIRTY, set()).update(school_ids)


@event.listens_for(KehouSession, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    if state.execution_options.get("catalogue_unchanged"):
        return
    table = getattr(state.statement, "table", None)
    if isinstance(table, Table) and table in _SOURCE_TABLES:
        _touch(state.session, [ALL])


@event.listens_for(KehouSession, "after_flush")
def _on_flush(session: Session, _context: Any) -> None:
    changed = {
        obj.school_id
        for obj in (*session.new, *session.dirty, *session.deleted)
        if isinstance(obj, SOURCES) and (obj not in session.dirty or session.is_modified(obj))
    }
    if changed:
        _touch(session, changed)


@event.listens_for(KehouSession, "before_commit")
def _on_commit(session: Session) -> None:
    session.flush()  # a change still pending must be seen by _on_flush first
    dirty: set[int] | None = session.info.pop(_DIRTY, None)
    if not dirty:
        return
    bump = update(School).values(catalogue_version=School.catalogue_version + 1)
    if ALL not in dirty:
        bump = bump.where(School.id.in_(sorted(dirty)))
    session.execute(bump.execution_options(synchronize_session=False, catalogue_unchanged=True))
    caches: dict[int, Any] | None = session.info.get(CACHES)
    if caches is not None:
        for school_id in list(caches) if ALL in dirty else dirty:
            caches.pop(school_id, None)


@event.listens_for(KehouSession, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_DIRTY, None)
