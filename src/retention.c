/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  Purging finished executions with their history: the allma.retention
 *	  setting, applied by worker 0 (when its passes are due: the schedule
 *	  at the end of this file), and allma_purge() for callers.
 *
 * What is purged: executions in a final status (COMPLETED, FAILED,
 * TIMED_OUT, CANCELLED) whose ended_at is older than the cut-off.  Only
 * allma.executions is deleted from: every table keyed by an execution id
 * (history, paths, forks, files, completion-action rows, and any later
 * one) references allma.executions ON DELETE CASCADE, so deleting the
 * execution deletes the rest and no orphan can exist.
 *
 * Batches: at most allma.purge_batch_size executions per statement, oldest
 * first, picked by the index on ended_at and deleted by their primary key:
 * the statement is "= ANY (ARRAY(picked))", not a join with the picked
 * rows, whose generic plan hashed a sequential scan of all of
 * allma.executions for every batch (a cost that grew with the retention
 * period; bench/RESULTS.md, the soak's diagnosis).  Worker 0 runs one
 * batch per transaction (a pass of its own, between its other passes),
 * every allma.purge_interval, and batch after batch while full batches
 * come back, each when it has nothing else due (worker.c); so a backlog is
 * worked off in many short transactions, never in one huge one, and the
 * executions a worker is finishing are skipped (SKIP LOCKED) rather than
 * waited for.
 *
 * allma_purge(older_than, flow_id) is for callers: it runs batches in the
 * caller's transaction until nothing older is left and returns how many
 * executions it deleted.  It picks the executions through the caller's
 * row-level security (so allma_user purges only what it may see: the
 * executions it started; allma_admin sees, and purges, all), then deletes
 * them as the bootstrap superuser (nobody but superusers may write allma's
 * tables).
 *
 * IDENTIFICATION
 *	  src/retention.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "retention.h"
#include "store.h"

int			allma_retention_s = 30 * 86400;
int			allma_purge_batch_size = 1000;
int			allma_purge_interval_ms = 60000;

/* the final statuses: a purged execution is in one of them */
#define FINISHED "status IN ('COMPLETED', 'FAILED', 'TIMED_OUT', 'CANCELLED') "

static SPIPlanPtr worker_plan = NULL;

void
allma_retention_define_gucs(void)
{
	DefineCustomIntVariable("allma.retention",
							"Sets how long finished executions and their history are kept.",
							"Worker 0 deletes executions that ended longer ago, in batches; 0 keeps everything.",
							&allma_retention_s,
							30 * 86400, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("allma.purge_batch_size",
							"Sets how many executions one purge transaction deletes at most.",
							NULL,
							&allma_purge_batch_size,
							1000, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("allma.purge_interval",
							"Sets how often worker 0 looks for executions to purge.",
							"While it finds full batches it goes on at once.",
							&allma_purge_interval_ms,
							60000, 100, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}

int64
allma_retention_purge_batch(void)
{
	Datum		args[2];
	Oid			types[2] = {TIMESTAMPTZOID, INT4OID};
	MemoryContext cxt = CurrentMemoryContext;
	int			rc;

	if (allma_retention_s <= 0)
		return 0;
	if (worker_plan == NULL)
		worker_plan = allma_store_prepare("DELETE FROM allma.executions "
										  " WHERE execution_id = ANY (ARRAY("
										  "  SELECT execution_id FROM allma.executions "
										  "   WHERE ended_at < $1 AND " FINISHED
										  "   ORDER BY ended_at LIMIT $2 FOR UPDATE SKIP LOCKED))",
										  2, types);
	args[0] = TimestampTzGetDatum(GetCurrentTimestamp() - (int64) allma_retention_s * USECS_PER_SEC);
	args[1] = Int32GetDatum(allma_purge_batch_size);
	rc = SPI_execute_plan(worker_plan, args, NULL, false, 0);
	MemoryContextSwitchTo(cxt);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "allma purge failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
		ereport(DEBUG1,
				(errmsg_internal("allma purged %llu executions", (unsigned long long) SPI_processed)));
	return (int64) SPI_processed;
}

void
allma_retention_reset(void)
{
	if (worker_plan != NULL)
		SPI_freeplan(worker_plan);
	worker_plan = NULL;
}

PG_FUNCTION_INFO_V1(allma_purge);

/*
 * allma_purge(older_than interval, flow_id text DEFAULT NULL) RETURNS bigint
 */
Datum
allma_purge(PG_FUNCTION_ARGS)
{
	Interval   *older_than;
	Datum		cutoff;
	Datum		args[3];
	Oid			pick_types[3] = {TIMESTAMPTZOID, TEXTOID, INT4OID};
	Oid			del_types[2] = {UUIDARRAYOID, TIMESTAMPTZOID};
	char		nulls[3] = {' ', ' ', ' '};
	int64		total = 0;
	int			empty_batches = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("older_than must not be null"),
				 errhint("Pass an interval such as '30 days'; '0' purges every finished execution.")));
	older_than = PG_GETARG_INTERVAL_P(0);
	if (older_than->time < 0 || older_than->day < 0 || older_than->month < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must not be negative"),
				 errdetail("older_than is %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(older_than))))));
	cutoff = DirectFunctionCall2(timestamptz_mi_interval,
								 TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
								 IntervalPGetDatum(older_than));

	args[0] = cutoff;
	args[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	args[2] = Int32GetDatum(allma_purge_batch_size);

	SPI_connect();
	for (;;)
	{
		bool		isnull;
		Datum		ids;
		Datum		dargs[2];
		Oid			save_userid;
		int			save_sec;
		int			rc;

		/* picked as the caller: row-level security decides what it may purge */
		rc = SPI_execute_with_args("SELECT array_agg(execution_id) FROM ("
								   "  SELECT execution_id FROM allma.executions "
								   "   WHERE ended_at < $1 AND " FINISHED
								   "     AND ($2::text IS NULL OR flow_id = $2) "
								   "   ORDER BY ended_at LIMIT $3) s",
								   3, pick_types, args, nulls, true, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "allma_purge: selecting executions failed: %s", SPI_result_code_string(rc));
		ids = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
			break;

		/* deleted as the bootstrap superuser, with all that is keyed by them */
		dargs[0] = ids;
		dargs[1] = cutoff;
		GetUserIdAndSecContext(&save_userid, &save_sec);
		SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID, save_sec | SECURITY_LOCAL_USERID_CHANGE);
		rc = SPI_execute_with_args("DELETE FROM allma.executions "
								   " WHERE execution_id = ANY ($1) AND ended_at < $2 AND " FINISHED,
								   2, del_types, dargs, NULL, false, 0);
		SetUserIdAndSecContext(save_userid, save_sec);
		if (rc != SPI_OK_DELETE)
			elog(ERROR, "allma_purge: deleting executions failed: %s", SPI_result_code_string(rc));
		total += (int64) SPI_processed;
		/* someone else (worker 0) deleted them first: look again, a few times */
		if (SPI_processed > 0)
			empty_batches = 0;
		else if (++empty_batches >= 3)
			break;
		CHECK_FOR_INTERRUPTS();
	}
	SPI_finish();
	PG_RETURN_INT64(total);
}

/* ----------------------------------------------------------------
 * When worker 0 purges (worker.c runs the passes)
 * ----------------------------------------------------------------
 */

static TimestampTz last_purge = 0;
static bool purge_more = false;

/* purge_enabled: this worker purges (worker 0, allma.retention > 0) */
static bool
purge_enabled(int slot)
{
	return slot == 0 && allma_retention_s > 0;
}

/*
 * purge_wait_ms: in how many milliseconds worker 0's next purge pass is
 * due, negative when it is overdue.  A pass is due every
 * allma.purge_interval after the last one began, and at once after a
 * batch that came back full.
 */
static int64
purge_wait_ms(void)
{
	TimestampTz due;

	due = purge_more ? last_purge :
		TimestampTzPlusMilliseconds(last_purge, allma_purge_interval_ms);
	return (int64) (due - GetCurrentTimestamp()) / 1000;
}

int64
allma_retention_purge_wait_ms(int slot)
{
	return purge_enabled(slot) ? purge_wait_ms() : -1;
}

bool
allma_retention_purge_due(int slot)
{
	return purge_enabled(slot) && purge_wait_ms() <= 0;
}

/*
 * A purge pass overdue by PURGE_DEFER_MS.  The loop runs a due purge when it
 * has nothing else to do right now, just before it would sleep, so that a
 * batch of deletes does not stand between work that has just arrived (the
 * wake-up that made the worker look) and its claim; a worker that never
 * runs out of work purges once the pass is overdue (a batch every
 * PURGE_DEFER_MS at most), so retention keeps pace under load.
 */
#define PURGE_DEFER_MS 200

bool
allma_retention_purge_overdue(int slot)
{
	return purge_enabled(slot) && -purge_wait_ms() >= PURGE_DEFER_MS;
}

void
allma_retention_purge_started(void)
{
	last_purge = GetCurrentTimestamp();
	purge_more = false;
}

void
allma_retention_purge_finished(int64 npurged)
{
	purge_more = npurged >= allma_purge_batch_size;
}
