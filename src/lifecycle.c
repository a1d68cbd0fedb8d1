/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  Ending executions from outside their steps: allma_cancel_execution,
 *	  the statements that end an execution tree and drop its paths (shared
 *	  with the workers), and the lifecycle GUCs.
 *
 * Lock order.  A worker's pass locks paths (its claim) and then, when an
 * execution ends, the executions row.  Ending a tree here locks only
 * executions rows (in execution-id order) and deletes paths, forks and
 * waits with SKIP LOCKED, so it never waits for a path a worker holds and
 * cannot deadlock with a pass: a path held by a pass stays until the
 * worker next claims it and, seeing the execution is no longer RUNNING,
 * drops it without running a step; a pass that parks the path (a wait, a
 * sync sub-flow) would not claim it again before the wait's deadline, so
 * its save writes the execution's row, finds it ended and drops the path
 * and releases the wait itself (store.c).  A pass that ends the execution at the
 * same moment updates it only while it is still RUNNING: whichever commits
 * first decides, exactly one terminal status.
 *
 * allma_cancel_execution runs as the bootstrap superuser (owner.c) after
 * checking that the caller started the execution (has the privileges of
 * its starter) or is allma_admin; an execution the caller may not see
 * "does not exist", as in allma_wait.
 *
 * IDENTIFICATION
 *	  src/lifecycle.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "acl.h"
#include "concurrency.h"
#include "errors.h"
#include "faultpoint.h"
#include "flowcache.h"
#include "jsonb_util.h"
#include "lifecycle.h"
#include "template.h"
#include "owner.h"
#include "shmem.h"
#include "steps/completion.h"
#include "spicache.h"

PG_FUNCTION_INFO_V1(allma_cancel_execution);
PG_FUNCTION_INFO_V1(allma_resume_flow);
PG_FUNCTION_INFO_V1(allma_execution_deadline);

/* the longest cancel reason accepted */
#define MAX_REASON_LEN 1000

int			allma_max_steps_per_execution = 10000;
int			allma_execution_timeout_s = 0;

void
allma_lifecycle_define_gucs(void)
{
	DefineCustomIntVariable("allma.max_steps_per_execution",
							"Sets the most step attempts one execution may run (0 = no limit).",
							"An execution that would run more fails with StepBudgetExceeded.",
							&allma_max_steps_per_execution, 10000, 0, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("allma.execution_timeout",
							"Sets the longest an execution may run, unless its flow sets timeoutSeconds (0 = no limit).",
							"An execution running longer ends with status TIMED_OUT.",
							&allma_execution_timeout_s, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
}

void
allma_lifecycle_notify_at_commit(void)
{
	allma_request_lifecycle_event_at_commit();
}

/*
 * exec_sql runs a statement through SPI and checks its result; the
 * caller's memory context stays current.  Every statement here finds its
 * rows by key or through a partial index: it runs as a key lookup
 * (allma_spi_execute_keyed), so that a plan made while the tables were
 * empty (the workers' time-out check, planned at the first pass after a
 * cleanup, was a sequential scan of allma.executions on every pass once
 * 100,000 executions waited) cannot scan them later.
 */
static void
exec_sql(const char *sql, int nargs, Oid *types, Datum *values, int expected)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			level = allma_spi_keyed_begin();
	int			rc = allma_spi_execute(sql, nargs, types, values, NULL, false, 0);

	allma_spi_keyed_end(level);

	/* SPI leaves its own context current: the caller's allocations go on */
	MemoryContextSwitchTo(cxt);
	if (rc != expected)
		elog(ERROR, "allma: lifecycle statement failed (%s)", SPI_result_code_string(rc));
}

/*
 * exec_kept runs sql as a plan kept in *slot (prepared on first use), for
 * the statements the workers run on every pass; like exec_sql otherwise
 * (a key lookup too)
 */
static void
exec_kept(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types, Datum *values, int expected)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			rc;

	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

		if (plan == NULL)
			elog(ERROR, "allma: could not prepare a lifecycle statement: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*slot = plan;
	}
	rc = allma_spi_execute_keyed(*slot, values, NULL, false, 0);
	MemoryContextSwitchTo(cxt);
	if (rc != expected)
		elog(ERROR, "allma: lifecycle statement failed (%s)", SPI_result_code_string(rc));
}

/* result_uuids: the first column (a uuid) of every row of the last SPI result */
static pg_uuid_t *
result_uuids(void)
{
	pg_uuid_t  *ids = palloc(sizeof(pg_uuid_t) * Max(SPI_processed, 1));

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		memcpy(&ids[i], DatumGetUUIDP(d), sizeof(pg_uuid_t));
	}
	return ids;
}

int
allma_lifecycle_end_tree(pg_uuid_t *id, const char *status, Jsonb *error, Jsonb *child_error)
{
	Oid			types[4] = {UUIDOID, TEXTOID, JSONBOID, JSONBOID};
	Datum		values[4];
	int			n;
	pg_uuid_t  *ended;

	values[0] = UUIDPGetDatum(id);
	values[1] = CStringGetTextDatum(status);
	values[2] = JsonbPGetDatum(error);
	values[3] = JsonbPGetDatum(child_error ? child_error : error);

	/*
	 * The execution and its running descendants (sub-flows record their
	 * parent), locked in id order; a row that ended meanwhile is skipped
	 * after the lock wait (the pass that ended it decided).
	 */
	exec_sql("WITH RECURSIVE tree(id) AS ("
			 "  SELECT $1::uuid "
			 "  UNION "
			 "  SELECT c.execution_id FROM allma.executions c JOIN tree t "
			 "    ON c.parent_execution_id = t.id WHERE c.status IN ('RUNNING', 'QUEUED')), "
			 "locked AS ("
			 "  SELECT x.execution_id, x.status FROM allma.executions x "
			 "   WHERE x.execution_id IN (SELECT id FROM tree) AND x.status IN ('RUNNING', 'QUEUED') "
			 "   ORDER BY x.execution_id FOR NO KEY UPDATE OF x) "
			 "UPDATE allma.executions x "
			 "   SET status = $2, ended_at = clock_timestamp(), "
			 "       error = CASE WHEN x.execution_id = $1 THEN $3 ELSE $4 END "
			 "  FROM locked l WHERE x.execution_id = l.execution_id "
			 "RETURNING x.execution_id, x.concurrency_key, l.status = 'RUNNING'",
			 4, types, values, SPI_OK_UPDATE_RETURNING);

	n = (int) SPI_processed;
	if (n == 0)
		return 0;
	ended = result_uuids();
	/* keyed ones free their slot or leave their queue (concurrency.c) */
	{
		SPITupleTable *tt = SPI_tuptable;
		int			nkeyed = 0;
		pg_uuid_t  *ids = palloc(sizeof(pg_uuid_t) * n);
		char	  **keys = palloc(sizeof(char *) * n);
		bool	   *held = palloc(sizeof(bool) * n);

		for (int i = 0; i < n; i++)
		{
			char	   *key = SPI_getvalue(tt->vals[i], tt->tupdesc, 2);
			bool		isnull;

			if (key == NULL)
				continue;
			ids[nkeyed] = ended[i];
			keys[nkeyed] = key;
			held[nkeyed++] = DatumGetBool(SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull));
		}
		allma_concurrency_release(nkeyed, ids, keys, held);
	}
	/* the same wake-up a worker sends for an execution it ends */
	for (int i = 0; i < n; i++)
		Async_Notify(ALLMA_NOTIFY_CHANNEL,
					 DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ended[i]))));
	/* their onCompletionActions, while their main paths' contexts are there */
	allma_completion_plan_ended(n, ended, status);
	allma_lifecycle_drop_paths(n, ended);
	allma_lifecycle_notify_at_commit();
	return n;
}

void
allma_lifecycle_drop_paths(int n, pg_uuid_t *executions)
{
	Datum	   *elems;
	Oid			types[1] = {UUIDARRAYOID};
	Datum		values[1];

	if (n == 0)
		return;
	elems = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
		elems[i] = UUIDPGetDatum(&executions[i]);
	values[0] = PointerGetDatum(construct_array(elems, n, UUIDOID, UUID_LEN, false,
												TYPALIGN_CHAR));

	/*
	 * Only executions that ended; by key (each lookup by the primary key's
	 * prefix); rows another transaction holds are skipped, they are dropped
	 * when a worker next claims them.  Completion-action paths (negative ids)
	 * stay: they run after the execution ended.
	 */
	exec_sql("WITH dead AS ("
			 "  SELECT x.execution_id AS e FROM allma.executions x "
			 "   WHERE x.execution_id = ANY ($1) AND x.status <> 'RUNNING'), "
			 "paths AS ("
			 "  DELETE FROM allma.execution_paths p "
			 "   USING (SELECT q.execution_id, q.path_id FROM allma.execution_paths q "
			 "           WHERE q.execution_id IN (SELECT e FROM dead) AND q.path_id >= 0 "
			 "           FOR UPDATE OF q SKIP LOCKED) s "
			 "   WHERE p.execution_id = s.execution_id AND p.path_id = s.path_id), "
			 "forks AS ("
			 "  DELETE FROM allma.forks f "
			 "   USING (SELECT g.execution_id, g.fork_path_id FROM allma.forks g "
			 "           WHERE g.execution_id IN (SELECT e FROM dead) "
			 "           FOR UPDATE OF g SKIP LOCKED) s "
			 "   WHERE f.execution_id = s.execution_id AND f.fork_path_id = s.fork_path_id), "
			 "waits AS ("
			 "  UPDATE allma.waits w SET status = 'CANCELLED', ended_at = clock_timestamp() "
			 "    FROM allma.executions x "
			 "   WHERE x.execution_id IN (SELECT e FROM dead) "
			 "     AND w.root_execution_id = coalesce(x.root_execution_id, x.execution_id) "
			 "     AND w.execution_id = x.execution_id AND w.status = 'OPEN') "
			 "SELECT 1",
			 1, types, values, SPI_OK_SELECT);
}

void
allma_lifecycle_drop_parked(int n, pg_uuid_t *executions, char **statuses)
{
	for (int i = 0; i < n; i++)
	{
		char	   *idtext = DatumGetCString(DirectFunctionCall1(uuid_out,
																 UUIDPGetDatum(&executions[i])));
		bool		cancelled = strcmp(statuses[i], "CANCELLED") == 0;
		Jsonb	   *child_error;

		child_error = allma_error_make(cancelled ? ALLMA_ERR_CANCELLED : ALLMA_ERR_EXECUTION_TIMEOUT,
									   psprintf(cancelled ? "parent execution %s was cancelled" :
												"parent execution %s timed out", idtext),
									   allma_jsonb_set_key(NULL, cancelled ? "cancelledExecutionId" :
														   "timedOutExecutionId",
														   allma_jsonb_string(idtext)));
		/* only its running descendants: the execution itself has ended */
		(void) allma_lifecycle_end_tree(&executions[i], statuses[i], child_error, child_error);
	}
	allma_lifecycle_drop_paths(n, executions);
}

/* ----------------------------------------------------------------
 * allma_cancel_execution
 * ----------------------------------------------------------------
 */

/*
 * allma_cancel_execution(execution_id uuid, reason text) returns text:
 * what happened.
 */
Datum
allma_cancel_execution(PG_FUNCTION_ARGS)
{
	Oid			caller = GetUserId();
	pg_uuid_t  *id;
	char	   *idtext;
	char	   *reason = NULL;
	char	   *caller_name;
	char	   *status = NULL;
	Oid			starter = InvalidOid;
	char	   *result;
	AllmaAsOwner st;
	MemoryContext outer = CurrentMemoryContext;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("execution_id must not be null")));
	id = PG_GETARG_UUID_P(0);
	idtext = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
	if (!PG_ARGISNULL(1))
	{
		reason = text_to_cstring(PG_GETARG_TEXT_PP(1));
		if (strlen(reason) > MAX_REASON_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("cancel reason is longer than %d bytes", MAX_REASON_LEN)));
	}
	caller_name = GetUserNameFromId(caller, false);

	allma_owner_begin(&st);
	{
		Oid			types[1] = {UUIDOID};
		Datum		values[1] = {UUIDPGetDatum(id)};

		/* locked: a pass that is ending it waits, or has decided */
		allma_owner_exec("SELECT status, started_by FROM allma.executions "
						 "WHERE execution_id = $1 FOR NO KEY UPDATE",
						 1, types, values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			bool		isnull;

			status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			starter = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 2, &isnull));
		}
	}
	if (status == NULL ||
		!(allma_acl_is_admin(caller) || has_privs_of_role(caller, starter)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("execution %s does not exist", idtext),
				 errhint("Only the role that started an execution, and allma_admin, may cancel it.")));

	if (strcmp(status, "RUNNING") != 0 && strcmp(status, "QUEUED") != 0)
		result = psprintf("execution %s already ended with status %s: nothing to cancel",
						  idtext, status);
	else
	{
		Jsonb	   *details = NULL;
		Jsonb	   *error;
		Jsonb	   *child_error;
		int			n;

		details = allma_jsonb_set_key(details, "cancelledBy", allma_jsonb_string(caller_name));
		if (reason != NULL)
			details = allma_jsonb_set_key(details, "reason", allma_jsonb_string(reason));
		error = allma_error_make(ALLMA_ERR_CANCELLED,
								 reason ? psprintf("cancelled by %s: %s", caller_name, reason)
								 : psprintf("cancelled by %s", caller_name),
								 details);
		child_error = allma_error_make(ALLMA_ERR_CANCELLED,
									   psprintf("parent execution %s was cancelled", idtext),
									   allma_jsonb_set_key(details, "cancelledExecutionId",
														   allma_jsonb_string(idtext)));
		n = allma_lifecycle_end_tree(id, "CANCELLED", error, child_error);
		if (n <= 1)
			result = psprintf("execution %s cancelled", idtext);
		else
			result = psprintf("execution %s cancelled, with %d child execution%s",
							  idtext, n - 1, n - 1 == 1 ? "" : "s");
	}
	result = MemoryContextStrdup(outer, result);
	allma_owner_end(&st);
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

/* ----------------------------------------------------------------
 * allma_resume_flow
 * ----------------------------------------------------------------
 */

/*
 * The statements of a resume, planned once per backend.  A resume runs
 * three in the usual case: find the wait by its key (the unique index of
 * open waits), make its path runnable, mark the wait resumed.  Each looks
 * its row up by key (no predicate of a partial index in their WHERE: with
 * no statistics yet, e.g. right after 100,000 waits parked, the planner
 * would otherwise walk the whole index of parked paths per call; the wait's
 * status is compared as "status || ''" for the same reason: the index of
 * open waits).
 *
 * No joins: the wait's starter comes from a subquery of its own that looks
 * the execution up by its primary key.  A join of waits and executions was
 * planned, when the statistics said executions was empty (an ANALYZE while
 * the 100,000 executions' start was still uncommitted records 0 rows on
 * all their pages), as a nested loop over a full scan of executions_pkey
 * (ordered for a merge join) with the key as a join filter: every resume
 * read every execution (t/057_resume_plans.pl).  A single-table lookup
 * by all columns of a key has no such plan: only the key's index, or a
 * sequential scan, which costs the table's real size in pages whatever the
 * statistics say.
 */
#define RESUME_FIND_OPEN	0
#define RESUME_FIND_LATEST	1
#define RESUME_READY_PATH	2
#define RESUME_MARK_WAIT	3
#define RESUME_WAIT_NOW		4
static SPIPlanPtr resume_plans[5];

/*
 * resume_exec runs resume statement "which" (prepared and kept on first
 * use: a resume from SELECT ... FROM a big set would otherwise spend most
 * of its time planning) and checks SPI's result.  The caller runs it in
 * the scope of a key lookup (allma_spi_keyed_begin: no plan made on an
 * empty table scans it later), one scope for the whole resume.
 */
static void
resume_exec(int which, const char *sql, int nargs, Oid *types, Datum *values, int expected)
{
	int			rc;

	if (resume_plans[which] == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

		if (plan == NULL)
			elog(ERROR, "allma: could not prepare a resume statement: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		resume_plans[which] = plan;
	}
	rc = SPI_execute_plan(resume_plans[which], values, NULL, false, 0);
	if (rc != expected)
		elog(ERROR, "allma: resume statement failed (%s)", SPI_result_code_string(rc));
}

/* the error of a key whose wait is not open (any more) */
static void
wait_not_open(const char *key, const char *status)
{
	if (status != NULL && strcmp(status, "RESUMED") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_WAIT_ALREADY_RESUMED),
				 errmsg("the wait on correlation key \"%s\" was already resumed", key),
				 errdetail("A correlation key resumes its wait once.")));
	if (status != NULL && strcmp(status, "TIMED_OUT") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_WAIT_TIMED_OUT),
				 errmsg("the wait on correlation key \"%s\" timed out", key),
				 errdetail("Its maxWaitTimeSeconds passed; the step failed with StepTimeoutError.")));
	if (status != NULL && strcmp(status, "CANCELLED") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_WAIT_CANCELLED),
				 errmsg("the wait on correlation key \"%s\" ended with its execution", key),
				 errdetail("The execution was cancelled or timed out.")));
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_UNKNOWN_WAIT),
			 errmsg("no execution waits on correlation key \"%s\"", key),
			 errhint("Only the role that started the execution, and allma_admin, may resume it.")));
}

/* may the caller resume (or learn about) waits of executions started by starter? */
static bool
may_control(Oid caller, Oid starter)
{
	return allma_acl_is_admin(caller) || has_privs_of_role(caller, starter);
}

/*
 * allma_resume_flow(correlation_key text, payload jsonb) returns uuid.
 *
 * Locks the waiting path first and then its wait, in the order a worker
 * timing the wait out takes them (store.c), so that a resume and a timeout,
 * or two resumes, of one wait give exactly one outcome: the first to lock
 * the path decides; the other finds the wait no longer open.
 */
Datum
allma_resume_flow(PG_FUNCTION_ARGS)
{
	Oid			caller = GetUserId();
	char	   *key;
	Jsonb	   *payload;
	AllmaAsOwner st;
	Datum		execution = (Datum) 0;
	pg_uuid_t  *result = palloc(sizeof(pg_uuid_t));
	Datum		wait_key[4];	/* root, execution, path, seq */
	Oid			starter;
	bool		isnull;
	int			keyed_level;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("correlation_key must not be null")));
	key = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (key[0] == '\0' || strlen(key) > 1024)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a correlation key has 1 to 1024 bytes")));
	payload = PG_ARGISNULL(1) ? allma_jsonb_empty_object() : PG_GETARG_JSONB_P(1);
	if (VARSIZE(payload) > allma_max_context_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("resume payload of %zu bytes exceeds allma.max_context_size (%d bytes)",
						(size_t) VARSIZE(payload), allma_max_context_bytes)));

	allma_owner_begin(&st);
	/* (an error unwinds it with the transaction or the caller's subtransaction) */
	keyed_level = allma_spi_keyed_begin();
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(key)};
		pg_uuid_t  *root;

		/* the open wait with its starter ... */
		resume_exec(RESUME_FIND_OPEN,
					"SELECT w.root_execution_id, w.execution_id, w.path_id, w.seq, "
					"       (SELECT x.started_by FROM allma.executions x "
					"         WHERE x.execution_id = w.execution_id) "
					"  FROM allma.waits w "
					" WHERE w.correlation_key = $1 AND w.status = 'OPEN'",
					1, types, values, SPI_OK_SELECT);
		if (SPI_processed == 0)
		{
			/* ... else the latest, for the error that says how it ended */
			resume_exec(RESUME_FIND_LATEST,
						"SELECT w.status, "
						"       (SELECT x.started_by FROM allma.executions x "
						"         WHERE x.execution_id = w.execution_id) "
						"  FROM allma.waits w "
						" WHERE w.correlation_key = $1 ORDER BY w.created_at DESC LIMIT 1",
						1, types, values, SPI_OK_SELECT);
			if (SPI_processed == 0)
				wait_not_open(key, NULL);
			starter = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
													 2, &isnull));
			if (isnull || !may_control(caller, starter))
				wait_not_open(key, NULL);
			wait_not_open(key, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		}
		starter = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
		if (isnull || !may_control(caller, starter))
			wait_not_open(key, NULL);
		root = MemoryContextAlloc(TopTransactionContext, sizeof(pg_uuid_t));
		memcpy(root, DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
												 1, &isnull)), sizeof(pg_uuid_t));
		memcpy(result, DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
												   2, &isnull)), sizeof(pg_uuid_t));
		wait_key[0] = UUIDPGetDatum(root);
		wait_key[1] = UUIDPGetDatum(result);
		wait_key[2] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
		wait_key[3] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull);
		execution = UUIDPGetDatum(result);
	}
	{
		Oid			types[6] = {UUIDOID, UUIDOID, INT8OID, INT4OID, JSONBOID, OIDOID};
		Datum		values[6] = {wait_key[0], wait_key[1], wait_key[2], wait_key[3],
		JsonbPGetDatum(payload), ObjectIdGetDatum(caller)};
		bool		done;

		/*
		 * The path first (a worker timing the wait out, or another resume,
		 * locks it first too): runnable if it is still parked on this wait.
		 * A concurrent resume or timeout that locked it first has made it
		 * READY when this one gets the lock: no row.
		 */
		resume_exec(RESUME_READY_PATH,
					"UPDATE allma.execution_paths p "
					"   SET status = 'READY', due_at = clock_timestamp(), "
					"       request = jsonb_set(p.request, '{wait,resumed}', 'true') "
					" WHERE p.execution_id = $2 AND p.path_id = $3 AND p.status = 'WAITING' "
					"   AND (p.request->'wait'->>'seq')::int4 = $4",
					6, types, values, SPI_OK_UPDATE);
		done = SPI_processed == 1;
		/* a test build may fail here: between the path and the wait */
		ALLMA_FAULT_POINT("during-resume");
		if (done)
		{
			/* then the wait, while it is open and before its deadline */
			resume_exec(RESUME_MARK_WAIT,
						"UPDATE allma.waits SET status = 'RESUMED', ended_at = clock_timestamp(), "
						"       payload = $5, resumed_by = $6::regrole "
						" WHERE root_execution_id = $1 AND execution_id = $2 AND path_id = $3 "
						"   AND seq = $4 AND status || '' = 'OPEN' AND deadline > clock_timestamp()",
						6, types, values, SPI_OK_UPDATE);
			done = SPI_processed == 1;
		}
		if (!done)
		{
			char	   *status;
			bool		past_deadline;

			/*
			 * Why not: the wait as it is now (this statement's snapshot sees
			 * what the lock waited for).  The error undoes the path.
			 */
			resume_exec(RESUME_WAIT_NOW,
						"SELECT status, deadline <= clock_timestamp() FROM allma.waits "
						" WHERE root_execution_id = $1 AND execution_id = $2 AND path_id = $3 "
						"   AND seq = $4",
						4, types, values, SPI_OK_SELECT);
			if (SPI_processed == 0)
				wait_not_open(key, NULL);
			status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			past_deadline = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
													   SPI_tuptable->tupdesc, 2, &isnull));
			if (strcmp(status, "OPEN") != 0)
				wait_not_open(key, status);
			if (past_deadline)
				wait_not_open(key, "TIMED_OUT");
			/* open, but its path no longer parked on it: its execution ended */
			wait_not_open(key, "CANCELLED");
		}
	}
	allma_spi_keyed_end(keyed_level);
	allma_owner_end(&st);
	allma_request_wake_at_commit();
	PG_RETURN_DATUM(execution);
}

/* ----------------------------------------------------------------
 * Execution timeouts
 * ----------------------------------------------------------------
 */

/* the longest timeoutSeconds (as validated) */
#define MAX_TIMEOUT_SECONDS 31536000.0

/*
 * timeout_of: the timeout of an execution of "flow" in seconds (0: none):
 * the flow's timeoutSeconds, else allma.execution_timeout.  *source says
 * which.
 */
static double
timeout_of(AllmaFlow *flow, const char **source)
{
	double		t = 0;

	if (flow != NULL && allma_jsonb_get_number(flow->definition, "timeoutSeconds", &t) &&
		t > 0 && t <= MAX_TIMEOUT_SECONDS)
	{
		*source = "timeoutSeconds";
		return t;
	}
	*source = "allma.execution_timeout";
	return allma_execution_timeout_s;
}

/*
 * allma_execution_deadline: BEFORE INSERT trigger on allma.executions that
 * sets deadline (unless the inserter did) to started_at plus the
 * execution's timeout, times allma.timer_scale like every durable timer.
 * Every way an execution starts goes through it.
 */
Datum
allma_execution_deadline(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tup;
	int			att_flow,
				att_version,
				att_started,
				att_deadline;
	bool		isnull;
	char	   *flow_id;
	int32		version;
	TimestampTz started;
	AllmaFlow  *flow;
	const char *source;
	double		timeout;
	Datum		value;
	bool		replace_null = false;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event))
		elog(ERROR, "allma_execution_deadline must run as a BEFORE INSERT row trigger");
	desc = RelationGetDescr(td->tg_relation);
	tup = td->tg_trigtuple;
	att_flow = SPI_fnumber(desc, "flow_id");
	att_version = SPI_fnumber(desc, "flow_version");
	att_started = SPI_fnumber(desc, "started_at");
	att_deadline = SPI_fnumber(desc, "deadline");
	if (att_flow <= 0 || att_version <= 0 || att_started <= 0 || att_deadline <= 0)
		elog(ERROR, "allma.executions lacks the columns of allma_execution_deadline");

	(void) heap_getattr(tup, att_deadline, desc, &isnull);
	if (!isnull)
		return PointerGetDatum(tup);
	flow_id = TextDatumGetCString(heap_getattr(tup, att_flow, desc, &isnull));
	version = DatumGetInt32(heap_getattr(tup, att_version, desc, &isnull));
	started = DatumGetTimestampTz(heap_getattr(tup, att_started, desc, &isnull));
	if (isnull)
		started = GetCurrentTimestamp();
	flow = allma_flow_get(flow_id, version);
	timeout = timeout_of(flow, &source);
	if (timeout <= 0)
		return PointerGetDatum(tup);
	value = TimestampTzGetDatum(TimestampTzPlusMilliseconds(started,
															(int64) (timeout * 1000.0 * allma_timer_scale)));
	return PointerGetDatum(heap_modify_tuple_by_cols(tup, desc, 1, &att_deadline, &value,
													 &replace_null));
}

/*
 * allma_lifecycle_time_out_executions ends up to "limit" running
 * executions whose deadline passed (and their running children) with
 * status TIMED_OUT, those no other transaction holds.  Found through the
 * partial index of running executions with a deadline, bounded by the
 * time as a parameter (clock_timestamp() in the statement would make every
 * pass walk the entries of all running executions that have a deadline).
 * Returns how many.
 * SPI connected, as a role that may write allma's tables.
 */
static SPIPlanPtr time_out_plan = NULL;

int
allma_lifecycle_time_out_executions(int limit)
{
	Oid			types[2] = {INT4OID, TIMESTAMPTZOID};
	Datum		values[2] = {Int32GetDatum(limit), TimestampTzGetDatum(GetCurrentTimestamp())};
	int			n;
	int			ended = 0;
	int			sort_level;
	pg_uuid_t  *ids;
	double	   *timeouts;

	/*
	 * (a kept plan: every claim pass runs it, parsing it each time cost 6 %)
	 * Planned with sorts disabled too: on statistics that said the table
	 * was empty (EXPLAIN of the generic plan, 100,000 running executions),
	 * the index of running executions (no condition on it) and a sort
	 * looked as cheap as the deadline index even with sequential scans
	 * disabled, and every pass would walk all running executions (the
	 * likely cause of a bench round whose workers spent 1,130 us per
	 * resume instead of 57 us).  The deadline index gives the order itself.
	 */
	sort_level = allma_spi_ordered_begin();
	exec_kept(&time_out_plan,
			 "SELECT x.execution_id, "
			 "       extract(epoch FROM x.deadline - x.started_at)::float8 "
			 "  FROM allma.executions x "
			 " WHERE x.status = 'RUNNING' AND x.deadline IS NOT NULL "
			 "   AND x.deadline <= $2 "
			 " ORDER BY x.deadline LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED",
			 2, types, values, SPI_OK_SELECT);
	allma_spi_keyed_end(sort_level);
	n = (int) SPI_processed;
	if (n == 0)
		return 0;
	ids = result_uuids();
	timeouts = palloc(sizeof(double) * n);
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		timeouts[i] = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
												   2, &isnull));
	}
	for (int i = 0; i < n; i++)
	{
		char	   *idtext = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ids[i])));
		Jsonb	   *details = allma_jsonb_set_key(NULL, "sqlstate", allma_jsonb_string("LM324"));
		Jsonb	   *error;
		Jsonb	   *child_error;

		details = allma_jsonb_set_key(details, "timeoutSeconds",
									  allma_jsonb_number(timeouts[i] / allma_timer_scale));
		error = allma_error_make(ALLMA_ERR_EXECUTION_TIMEOUT,
								 psprintf("execution ran longer than its timeout of %g s",
										  timeouts[i] / allma_timer_scale),
								 details);
		child_error = allma_error_make(ALLMA_ERR_EXECUTION_TIMEOUT,
									   psprintf("parent execution %s timed out", idtext),
									   allma_jsonb_set_key(details, "timedOutExecutionId",
														   allma_jsonb_string(idtext)));
		ended += allma_lifecycle_end_tree(&ids[i], "TIMED_OUT", error, child_error);
	}
	return ended;
}
