/* allma--1.0--1.1.sql: upgrades an installation of allma 1.0 to 1.1 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION allma UPDATE TO '1.1'" to load this file. \quit

/*
 * 1.0 has shipped: its install script (allma--1.0.sql) is frozen.  A fresh
 * CREATE EXTENSION allma runs allma--1.0.sql followed by this script, so
 * every schema change of 1.1 lives here, grouped by the feature it belongs
 * to.  Each section must work both on a fresh 1.0 install and on a 1.0
 * installation with executions in flight (t/020_upgrade.pl).
 */

------------------------------------------------------------------------------
-- Engine and workers
------------------------------------------------------------------------------


------------------------------------------------------------------------------
-- Security: roles, ownership, grants, row-level security
------------------------------------------------------------------------------


------------------------------------------------------------------------------
-- Execution lifecycle: waits, sub-flows, cancel, timeouts, redrive
------------------------------------------------------------------------------


------------------------------------------------------------------------------
-- Allma compatibility: import/export, DynamoDB and S3 modules, email triggers
------------------------------------------------------------------------------


------------------------------------------------------------------------------
-- Operations: schedules, retention, completion actions
------------------------------------------------------------------------------


------------------------------------------------------------------------------
-- Faults and limits
------------------------------------------------------------------------------


------------------------------------------------------------------------------
-- Observability: graphs, timelines, progress, statistics
------------------------------------------------------------------------------


------------------------------------------------------------------------------
-- Rate limits, concurrency keys, priorities
------------------------------------------------------------------------------


------------------------------------------------------------------------------
-- Scale: out-of-line values
------------------------------------------------------------------------------

