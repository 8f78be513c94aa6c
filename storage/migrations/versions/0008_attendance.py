"""attendance, dismissal, daily updates and growth notes: the teacher's day

Attendance becomes an append-only log of marks with the codes as data; sessions are written
when first needed and carry who taught them and when the roll was submitted. The old
`attendance` table was never written and is dropped.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('attendance_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('emoji', sa.String(length=8), nullable=False),
    sa.Column('label', sa.String(length=60), nullable=False),
    sa.Column('words', sa.JSON(), nullable=False),
    sa.Column('present', sa.Boolean(), nullable=False),
    sa.Column('alerts', sa.Boolean(), nullable=False),
    sa.Column('cycle', sa.SmallInteger(), nullable=True),
    sa.Column('position', sa.SmallInteger(), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_attendance_codes_school_id_schools'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attendance_codes')),
    sa.UniqueConstraint('school_id', 'code', name=op.f('uq_attendance_codes_school_id'))
    )
    op.create_table('attendance_marks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('student_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('previous', sa.String(length=20), nullable=True),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('note', sa.String(length=200), nullable=True),
    sa.Column('alerted', sa.Boolean(), nullable=False),
    sa.Column('actor_user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', storage.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['actor_user_id'], ['users.id'], name=op.f('fk_attendance_marks_actor_user_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_attendance_marks_school_id_schools'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_attendance_marks_session_id_sessions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['student_id'], ['students.id'], name=op.f('fk_attendance_marks_student_id_students'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attendance_marks'))
    )
    with op.batch_alter_table('attendance_marks', schema=None) as batch_op:
        batch_op.create_index('ix_attendance_marks_session_student', ['session_id', 'student_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attendance_marks_student_id'), ['student_id'], unique=False)

    op.create_table('growth_notes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('term_id', sa.Integer(), nullable=False),
    sa.Column('student_id', sa.Integer(), nullable=False),
    sa.Column('teacher_id', sa.Integer(), nullable=True),
    sa.Column('author_user_id', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', storage.models.UTCDateTime(), nullable=False),
    sa.Column('released_at', storage.models.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['author_user_id'], ['users.id'], name=op.f('fk_growth_notes_author_user_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_growth_notes_school_id_schools'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['student_id'], ['students.id'], name=op.f('fk_growth_notes_student_id_students'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['teacher_id'], ['teachers.id'], name=op.f('fk_growth_notes_teacher_id_teachers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['term_id'], ['terms.id'], name=op.f('fk_growth_notes_term_id_terms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_growth_notes'))
    )
    with op.batch_alter_table('growth_notes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_growth_notes_student_id'), ['student_id'], unique=False)

    op.create_table('pickup_people',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('student_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('relation', sa.String(length=40), nullable=True),
    sa.Column('added_by_user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', storage.models.UTCDateTime(), nullable=False),
    sa.Column('removed_at', storage.models.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['added_by_user_id'], ['users.id'], name=op.f('fk_pickup_people_added_by_user_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_pickup_people_school_id_schools'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['student_id'], ['students.id'], name=op.f('fk_pickup_people_student_id_students'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pickup_people'))
    )
    with op.batch_alter_table('pickup_people', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pickup_people_student_id'), ['student_id'], unique=False)

    op.create_table('dismissals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('student_id', sa.Integer(), nullable=False),
    sa.Column('way', sa.Enum('guardian', 'authorised', 'alone', 'extended', name='dismissal_way', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('pickup_person_id', sa.Integer(), nullable=True),
    sa.Column('left_at', storage.models.UTCDateTime(), nullable=False),
    sa.Column('actor_user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', storage.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['actor_user_id'], ['users.id'], name=op.f('fk_dismissals_actor_user_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['pickup_person_id'], ['pickup_people.id'], name=op.f('fk_dismissals_pickup_person_id_pickup_people'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_dismissals_school_id_schools'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_dismissals_session_id_sessions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['student_id'], ['students.id'], name=op.f('fk_dismissals_student_id_students'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dismissals'))
    )
    with op.batch_alter_table('dismissals', schema=None) as batch_op:
        batch_op.create_index('ix_dismissals_session_student', ['session_id', 'student_id'], unique=False)

    op.drop_table('attendance')
    with op.batch_alter_table('classes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('group_updates', sa.Boolean(), server_default='0', nullable=False))

    with op.batch_alter_table('daily_updates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('author_user_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('photos', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('unconsented', sa.JSON(), nullable=True))
        batch_op.create_index(batch_op.f('ix_daily_updates_session_id'), ['session_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_daily_updates_author_user_id_users'), 'users', ['author_user_id'], ['id'], ondelete='SET NULL')
        batch_op.drop_column('photo_file_id')

    with op.batch_alter_table('schools', schema=None) as batch_op:
        batch_op.add_column(sa.Column('patrol_time', sa.Time(), server_default='19:30:00', nullable=False))
        batch_op.add_column(sa.Column('correction_days', sa.SmallInteger(), server_default='7', nullable=False))
        batch_op.add_column(sa.Column('absence_streak', sa.SmallInteger(), server_default='3', nullable=False))
        batch_op.add_column(sa.Column('roll_reminder_minutes', sa.SmallInteger(), server_default='15', nullable=False))

    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('teacher_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('roll_submitted_at', storage.models.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('roll_submitted_by_user_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('roll_version', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('roll_reminded_at', storage.models.UTCDateTime(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_sessions_roll_submitted_by_user_id_users'), 'users', ['roll_submitted_by_user_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_sessions_teacher_id_teachers'), 'teachers', ['teacher_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('students', schema=None) as batch_op:
        batch_op.add_column(sa.Column('alone_permitted_by_user_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('alone_permitted_at', storage.models.UTCDateTime(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_students_alone_permitted_by_user_id_users'), 'users', ['alone_permitted_by_user_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('update_mode', sa.Enum('instant', 'digest', 'muted', name='update_mode', native_enum=False, create_constraint=True), server_default='digest', nullable=False))
        batch_op.add_column(sa.Column('dismissal_notice', sa.Boolean(), server_default='0', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('dismissal_notice')
        batch_op.drop_column('update_mode')

    with op.batch_alter_table('students', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_students_alone_permitted_by_user_id_users'), type_='foreignkey')
        batch_op.drop_column('alone_permitted_at')
        batch_op.drop_column('alone_permitted_by_user_id')

    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_sessions_teacher_id_teachers'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_sessions_roll_submitted_by_user_id_users'), type_='foreignkey')
        batch_op.drop_column('roll_reminded_at')
        batch_op.drop_column('roll_version')
        batch_op.drop_column('roll_submitted_by_user_id')
        batch_op.drop_column('roll_submitted_at')
        batch_op.drop_column('teacher_id')

    with op.batch_alter_table('schools', schema=None) as batch_op:
        batch_op.drop_column('roll_reminder_minutes')
        batch_op.drop_column('absence_streak')
        batch_op.drop_column('correction_days')
        batch_op.drop_column('patrol_time')

    with op.batch_alter_table('daily_updates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('photo_file_id', sa.VARCHAR(length=200), nullable=True))
        batch_op.drop_constraint(batch_op.f('fk_daily_updates_author_user_id_users'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_daily_updates_session_id'))
        batch_op.drop_column('unconsented')
        batch_op.drop_column('photos')
        batch_op.drop_column('author_user_id')

    with op.batch_alter_table('classes', schema=None) as batch_op:
        batch_op.drop_column('group_updates')

    op.create_table('attendance',
    sa.Column('id', sa.INTEGER(), nullable=False),
    sa.Column('school_id', sa.INTEGER(), nullable=False),
    sa.Column('session_id', sa.INTEGER(), nullable=False),
    sa.Column('student_id', sa.INTEGER(), nullable=False),
    sa.Column('status', sa.VARCHAR(length=7), nullable=False),
    sa.Column('note', sa.VARCHAR(length=200), nullable=True),
    sa.Column('recorded_by_teacher_id', sa.INTEGER(), nullable=True),
    sa.Column('recorded_at', sa.DATETIME(), nullable=False),
    sa.CheckConstraint("status IN ('present', 'absent', 'leave', 'late')", name=op.f('ck_attendance_attendance_status')),
    sa.ForeignKeyConstraint(['recorded_by_teacher_id'], ['teachers.id'], name=op.f('fk_attendance_recorded_by_teacher_id_teachers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_attendance_school_id_schools'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_attendance_session_id_sessions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['student_id'], ['students.id'], name=op.f('fk_attendance_student_id_students'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attendance')),
    sa.UniqueConstraint('session_id', 'student_id', name=op.f('uq_attendance_session_id'))
    )
    with op.batch_alter_table('dismissals', schema=None) as batch_op:
        batch_op.drop_index('ix_dismissals_session_student')

    op.drop_table('dismissals')
    with op.batch_alter_table('pickup_people', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pickup_people_student_id'))

    op.drop_table('pickup_people')
    with op.batch_alter_table('growth_notes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_growth_notes_student_id'))

    op.drop_table('growth_notes')
    with op.batch_alter_table('attendance_marks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attendance_marks_student_id'))
        batch_op.drop_index('ix_attendance_marks_session_student')

    op.drop_table('attendance_marks')
    op.drop_table('attendance_codes')
