-- Runs last. PUBLIC gets nothing: an administrator grants each role exactly
-- what it needs (see README, "Privileges"). The API functions are SECURITY
-- DEFINER, so such roles need no privilege on the tables.
REVOKE ALL ON ALL TABLES IN SCHEMA jobs FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA jobs FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobs FROM PUBLIC;
REVOKE ALL ON SCHEMA jobs FROM PUBLIC;
