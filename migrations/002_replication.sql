-- 002_replication.sql: prepares the school database for cdc-broadcaster.
--
-- Run as the tables' owner (or a superuser), after 001_school_schema.sql.
-- The server needs wal_level = logical (postgresql.conf; a restart), and
-- max_replication_slots / max_wal_senders of at least 2 each: one for the
-- permanent slot of `serve`, one for the temporary slot of `tail`.
--
-- The replication slot is not created here: `serve` (source.create: true) or
-- `setup` creates it, so that it starts at a position the program knows.
--
-- Keep this file in step with the `mappings` and `channels` of
-- config.example.yaml; `cdc-broadcaster check` reports any drift.

-- The broadcaster's own role. LOGIN REPLICATION lets it open a replication
-- connection and create slots; it is not a superuser and owns nothing. Its
-- password is set by the operator, out of band:
--     ALTER ROLE cdc_broadcaster PASSWORD '...';
-- Created only when missing, so re-running against a cluster that already
-- has the role (roles are cluster-wide) does not fail.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdc_broadcaster') THEN
        CREATE ROLE cdc_broadcaster LOGIN REPLICATION;
    END IF;
END;
$$;

-- Connecting to this database (whatever its name) and seeing its tables.
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO cdc_broadcaster', current_database());
END;
$$;
GRANT USAGE ON SCHEMA public TO cdc_broadcaster;

-- The `sql` access rules of the channels run as this role on a read pool:
-- class:, exam:, student: and reportcard: look up class membership,
-- parent links and the owning class of exams and report cards.
GRANT SELECT ON class_teachers, students, parent_students, exams, report_cards
    TO cdc_broadcaster;

-- The mapped tables. Reading the replication stream through a publication
-- needs no SELECT privilege, and `check` learns tables, columns and replica
-- identities from the system catalog, which every role may read. The grant
-- lets `check` and operators test a mapping with plain queries, and lets
-- new `sql` rules use these tables; drop it for a stricter setup.
GRANT SELECT ON
    exam_sessions, exam_results, grading_tasks, attendance, classes, subjects,
    academic_terms, announcements, vacancies, notifications, uploads
    TO cdc_broadcaster;
-- users and applications hold credentials and applicants' personal details:
-- only the columns a mapping or rule may name.
GRANT SELECT (id, role, is_active, created_at, updated_at) ON users TO cdc_broadcaster;
GRANT SELECT (id, vacancy_id, status, reviewed_by, created_at, updated_at)
    ON applications TO cdc_broadcaster;

-- The publication the slot reads: every mapped table, plus the tables named
-- in `recheck_on` (class_teachers, parent_students; students and exams are
-- mapped anyway), whose changes make the broadcaster re-check live
-- subscriptions although they emit no event.
--
-- users is published with a column list (PostgreSQL 15), so that password
-- hashes, e-mail addresses and phone numbers never leave the database; a
-- mapping of users can name only these columns. Its primary key must stay in
-- the list for UPDATE and DELETE to be published.
--
-- Creating it here means the broadcaster's role, which owns no table, never
-- needs to: ALTER PUBLICATION ... ADD TABLE (source.create: true, `setup`)
-- requires owning the table, so a table newly mapped later is added by the
-- owner, or `setup --dry-run` prints the statement to run.
CREATE PUBLICATION cdc_broadcaster FOR TABLE
    users (id, role, is_active, created_at, updated_at),
    students,
    parent_students,
    classes,
    class_teachers,
    subjects,
    academic_terms,
    exams,
    exam_sessions,
    exam_results,
    grading_tasks,
    attendance,
    report_cards,
    announcements,
    vacancies,
    applications,
    uploads,
    notifications;

-- REPLICA IDENTITY FULL makes UPDATE and DELETE carry the whole old row
-- instead of the primary key alone. A table needs it when its mapping reads
-- a non-key `old.` column in a `when`, a `{old.col}` template, or a
-- non-key `{col}` template on DELETE (which takes the old row). The cost is
-- a larger WAL record per UPDATE/DELETE on these tables (TOASTed old values
-- included), so the rest keep the default (primary key).

-- exam.published: old.status; exam.deleted: class:{class_id} from the old row.
ALTER TABLE exams REPLICA IDENTITY FULL;
-- exam.submitted / auto_submitted, examSession.completed: old.status;
-- examSession.progress: old.progress.
ALTER TABLE exam_sessions REPLICA IDENTITY FULL;
-- gradingTask.deleted: exam:{exam_id} from the old row.
ALTER TABLE grading_tasks REPLICA IDENTITY FULL;
-- reportcard.published / finalized / reverted: old.status;
-- reportcard.deleted: student:{student_id}, class:{class_id} from the old row.
ALTER TABLE report_cards REPLICA IDENTITY FULL;
-- student.enrolled: old.class_id, class:{old.class_id};
-- student.deleted: class:{class_id} from the old row.
ALTER TABLE students REPLICA IDENTITY FULL;
-- term.activated: old.is_active.
ALTER TABLE academic_terms REPLICA IDENTITY FULL;
-- announcement.updated / deleted: old.target_role, role:{old.target_role}.
ALTER TABLE announcements REPLICA IDENTITY FULL;
-- vacancy.closed: old.status.
ALTER TABLE vacancies REPLICA IDENTITY FULL;
-- application.statusChanged: old.status.
ALTER TABLE applications REPLICA IDENTITY FULL;
-- upload.completed / failed / progress: old.status, old.progress.
ALTER TABLE uploads REPLICA IDENTITY FULL;
-- notification.read: old.is_read.
ALTER TABLE notifications REPLICA IDENTITY FULL;
-- Not needed: users, classes, subjects (key-only templates), exam_results
-- and attendance (their templates read the new row; DELETE is not mapped for
-- attendance, and exam_results maps no DELETE).
