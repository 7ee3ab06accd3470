-- Where each queue's claimable work starts (src/position.rs says why and
-- how): the parts of the position a claim starts from, and the trigger
-- through which everything that makes a row queued lowers it.
CREATE FUNCTION jobs._claim_from_priority(relation regclass, queue text, ticket bigint) RETURNS int
LANGUAGE c STABLE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'claim_from_priority';
CREATE FUNCTION jobs._claim_from_run_at(relation regclass, queue text, ticket bigint) RETURNS timestamptz
LANGUAGE c STABLE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'claim_from_run_at';
CREATE FUNCTION jobs._claim_from_id(relation regclass, queue text, ticket bigint) RETURNS bigint
LANGUAGE c STABLE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'claim_from_id';

CREATE FUNCTION jobs._job_queued() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'job_queued';

-- ALWAYS: it fires with session_replication_role = replica too.
CREATE TRIGGER job_queued AFTER INSERT OR UPDATE ON jobs.job
    FOR EACH ROW WHEN (NEW.state = 'queued') EXECUTE FUNCTION jobs._job_queued();
ALTER TABLE jobs.job ENABLE ALWAYS TRIGGER job_queued;
