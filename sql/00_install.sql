-- The extension installs, and its objects are where the README says.
CREATE EXTENSION allma;
SELECT extname, extversion FROM pg_extension WHERE extname = 'allma';
SELECT c.relname, c.relkind
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'allma' AND c.relkind IN ('r', 'v', 'S')
 ORDER BY 1;
SELECT proname FROM pg_proc WHERE proname LIKE 'allma\_%' ORDER BY 1;
SELECT policy_name, error_equals, interval_seconds, backoff_rate, max_retries
  FROM allma.retry_policies ORDER BY priority;
-- GUCs are registered under the reserved allma. prefix
SELECT name, setting, context FROM pg_settings WHERE name LIKE 'allma.%' ORDER BY 1;
SET allma.no_such_setting = 1;
