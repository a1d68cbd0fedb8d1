/*-------------------------------------------------------------------------
 *
 * pathfail.c
 *	  Engine faults: durable per-path failure counts and quarantine.
 *
 * An error the engine cannot pin on one step (writing a batch back, a
 * trigger someone put on allma's tables, a response that cannot be
 * recorded) aborts a whole worker pass.  The worker then runs the paths of
 * that pass one per pass (worker.c, "solo" passes); a solo pass that fails
 * is the fault of its one path, and is counted here, in
 * allma.path_failures, in a transaction of its own (so the count survives
 * the abort).  A path whose count reached allma.max_path_failures is not
 * run again: the next solo pass that claims it fails it with errorName
 * "PathQuarantined" instead (its execution FAILED, or its branch failed in
 * its fork), so that it is never retried forever.  A solo pass that
 * succeeds clears its path's count.
 *
 * Errors that are no path's fault (disk full, a cancel, a deadlock, an
 * administrator's shutdown, an I/O error: allma_pathfail_is_systemic) are
 * not counted: the pass is simply retried.
 *
 * Who sees the rows: allma_admin all, allma_user those of the executions
 * it may see; only the workers (superuser) write them.
 *
 * IDENTIFICATION
 *	  src/pathfail.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/uuid.h"

#include "errors.h"
#include "passmark.h"
#include "pathfail.h"
#include "store.h"

int			allma_max_path_failures = 3;

static SPIPlanPtr record_plan = NULL;
static SPIPlanPtr lookup_plan = NULL;
static SPIPlanPtr forget_plan = NULL;

void
allma_pathfail_define_gucs(void)
{
	DefineCustomIntVariable("allma.max_path_failures",
							"Sets how many failed worker passes quarantine a path.",
							"A path whose pass failed (outside its steps) this many times "
							"when run alone fails with errorName PathQuarantined.",
							&allma_max_path_failures,
							3, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}

void
allma_pathfail_reset(void)
{
	SPIPlanPtr *plans[] = {&record_plan, &lookup_plan, &forget_plan};

	for (int i = 0; i < lengthof(plans); i++)
	{
		if (*plans[i] != NULL)
			SPI_freeplan(*plans[i]);
		*plans[i] = NULL;
	}
}

/*
 * allma_pathfail_is_systemic: is an error of this SQLSTATE no path's fault?
 * Connection, transaction rollback (deadlock, serialization), insufficient
 * resources other than memory (disk full, too many connections), operator
 * intervention (cancel, shutdown), system errors (I/O), lock not available.
 * Out of memory counts against the path: a path that pads gigabytes is the
 * usual cause.
 */
bool
allma_pathfail_is_systemic(int sqlerrcode)
{
	int			class = ERRCODE_TO_CATEGORY(sqlerrcode);

	if (sqlerrcode == ERRCODE_OUT_OF_MEMORY)
		return false;
	return class == ERRCODE_CONNECTION_EXCEPTION ||
		class == ERRCODE_TRANSACTION_ROLLBACK ||
		class == ERRCODE_INSUFFICIENT_RESOURCES ||
		class == ERRCODE_OPERATOR_INTERVENTION ||
		class == ERRCODE_SYSTEM_ERROR ||
		sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
}

/*
 * allma_pathfail_record counts a failed solo pass of a path.  SPI
 * connected, in a transaction of its own.
 */
void
allma_pathfail_record(const pg_uuid_t *execution_id, int64 path_id, const char *message)
{
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};

	if (record_plan == NULL)
	{
		Oid			types[3] = {UUIDOID, INT8OID, TEXTOID};

		record_plan = allma_store_prepare("INSERT INTO allma.path_failures AS f "
								   "  (execution_id, path_id, failures, last_error) "
								   "SELECT $1, $2, 1, $3 "
								   " WHERE EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = $1) "
								   "ON CONFLICT (execution_id, path_id) DO UPDATE "
								   "SET failures = f.failures + 1, last_error = excluded.last_error, "
								   "    last_failed_at = clock_timestamp()", 3, types);
	}
	args[0] = UUIDPGetDatum(execution_id);
	args[1] = Int64GetDatum(path_id);
	if (message != NULL)
		args[2] = CStringGetTextDatum(message);
	else
		nulls[2] = 'n';
	if (SPI_execute_plan(record_plan, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record a failed pass of an allma path");
}

/*
 * allma_pathfail_quarantine: when the path's pass already failed
 * allma.max_path_failures times, fail it (PathQuarantined) and return
 * true; the caller saves it as usual instead of running it.  SPI
 * connected.
 */
bool
allma_pathfail_quarantine(AllmaPathState *ps)
{
	Datum		args[3];
	MemoryContext cxt = CurrentMemoryContext;
	int32		failures;
	int32		crashes;
	char	   *last_error;
	bool		isnull;

	if (lookup_plan == NULL)
	{
		Oid			types[3] = {UUIDOID, INT8OID, INT4OID};

		lookup_plan = allma_store_prepare("SELECT failures, last_error, "
								   "       CASE WHEN crash_seq = $3 THEN crashes ELSE 0 END "
								   "  FROM allma.path_failures "
								   " WHERE execution_id = $1 AND path_id = $2", 3, types);
	}
	args[0] = UUIDPGetDatum(&ps->execution_id);
	args[1] = Int64GetDatum(ps->path_id);
	args[2] = Int32GetDatum(ps->seq);
	if (SPI_execute_plan(lookup_plan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the failed passes of an allma path");
	MemoryContextSwitchTo(cxt);
	if (SPI_processed == 0)
		return false;
	failures = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	crashes = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	if (failures < allma_max_path_failures && crashes < allma_max_path_crashes)
		return false;
	last_error = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

	if (crashes >= allma_max_path_crashes)
		ps->error = allma_error_make("PathQuarantined",
									 psprintf("path %lld of the execution was quarantined at step \"%s\": "
											  "the worker running it from this step on died %d times (allma.max_path_crashes = %d); "
											  "last error: %s",
											  (long long) ps->path_id,
											  ps->step_id ? ps->step_id : "(none)",
											  crashes, allma_max_path_crashes,
											  last_error ? last_error : "unknown"),
									 NULL);
	else
	ps->error = allma_error_make("PathQuarantined",
								 psprintf("path %lld of the execution was quarantined at step \"%s\": "
										  "its worker pass failed %d times (allma.max_path_failures = %d); "
										  "last error: %s",
										  (long long) ps->path_id,
										  ps->step_id ? ps->step_id : "(none)",
										  failures, allma_max_path_failures,
										  last_error ? last_error : "unknown"),
								 NULL);
	ps->step_id = NULL;
	ps->ended = true;
	ps->failed = true;
	ps->inflight = false;
	ps->waiting = false;
	ps->steps_run++;
	return true;
}

/* allma_pathfail_forget: the path's solo pass succeeded.  SPI connected. */
void
allma_pathfail_forget(const pg_uuid_t *execution_id, int64 path_id)
{
	Datum		args[2];

	if (forget_plan == NULL)
	{
		Oid			types[2] = {UUIDOID, INT8OID};

		forget_plan = allma_store_prepare("DELETE FROM allma.path_failures "
								   " WHERE execution_id = $1 AND path_id = $2", 2, types);
	}
	args[0] = UUIDPGetDatum(execution_id);
	args[1] = Int64GetDatum(path_id);
	if (SPI_execute_plan(forget_plan, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not clear the failed passes of an allma path");
}
