-- 003_emit.sql: cdc_emit(), the application's way to emit an event that is
-- not a row change: an exam closing soon, a grading job's progress, a
-- notice to admins (docs/config.md, "Emitted events").
--
-- It writes a logical decoding message, prefix 'cdc.emit' (the default of
-- emit.prefix: change both together), whose content is the JSON the
-- broadcaster reads: {"type": ..., "channels": [...], "data": {...}}. No
-- table, no row, no cleanup: the message lives in the WAL only.
--
--   SELECT cdc_emit('exam.closing_soon', ARRAY['exam:7', 'class:3'],
--                   jsonb_build_object('examId', 7, 'classId', 3, 'minutesLeft', 10));
--
-- transactional (the default): the event is part of the caller's
-- transaction. It reaches clients only if, and when, the transaction
-- commits, in its place among the transaction's row events, and never
-- after a rollback.
--
-- transactional => false: the event is sent at once, even while the
-- caller's transaction runs on, and even if it later rolls back. Meant for
-- progress ticks of long work; its place in the event stream is where it
-- was written, before the events of any transaction that commits later.
--
-- What may be emitted, on which channels, and how large, is the operator's
-- `emit` section of the config; a message that breaks it is dropped whole
-- and counted (cdc_broadcaster_emit_dropped_total). Any role that may
-- connect can call pg_logical_emit_message itself: the `emit` section, not
-- this function, is what bounds the events. Functions are executable by
-- PUBLIC by default; to let only the application emit, REVOKE EXECUTE ON
-- FUNCTION cdc_emit(text, text[], jsonb, boolean) FROM PUBLIC and GRANT it
-- to the application's role.
--
-- It returns the message's position in the WAL.
CREATE FUNCTION cdc_emit(
    event_type    text,
    channels      text[],
    data          jsonb   DEFAULT NULL,
    transactional boolean DEFAULT true
) RETURNS pg_lsn
LANGUAGE sql VOLATILE
AS $$
    SELECT pg_catalog.pg_logical_emit_message(
        transactional,
        'cdc.emit',
        pg_catalog.json_build_object('type', event_type, 'channels', channels, 'data', data)::text)
$$;
