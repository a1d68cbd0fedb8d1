/*-------------------------------------------------------------------------
 *
 * store.c
 *	  The worker's SQL: claiming runnable paths and writing back a batch.
 *
 * Every statement is a saved SPI plan, prepared on first use and dropped
 * when the extension is re-created (allma_store_reset).
 *
 * Claim: one statement locks up to allma.batch_size READY paths whose
 * due_at has passed, oldest first, with FOR UPDATE SKIP LOCKED, so that
 * several workers take disjoint batches and never run the same step twice.
 * The row locks are held until the batch's transaction commits.
 *
 * Save: whatever the engine did to the whole batch is written with a
 * handful of set-based statements over unnest()ed arrays, not one
 * statement per path: the paths' new positions, the finished paths'
 * deletion, the terminal executions, and the history rows.  NOTIFYs for
 * terminal executions are queued in the same transaction.
 *
 * IDENTIFICATION
 *	  src/store.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "engine.h"
#include "errors.h"
#include "flowcache.h"
#include "jsonb_util.h"
#include "store.h"

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr update_paths_plan = NULL;
static SPIPlanPtr delete_paths_plan = NULL;
static SPIPlanPtr finish_executions_plan = NULL;
static SPIPlanPtr insert_history_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;

static SPIPlanPtr
prepare(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

void
allma_store_reset(void)
{
	SPIPlanPtr *plans[] = {&claim_plan, &update_paths_plan, &delete_paths_plan,
	&finish_executions_plan, &insert_history_plan, &next_due_plan};

	for (int i = 0; i < lengthof(plans); i++)
	{
		if (*plans[i] != NULL)
			SPI_freeplan(*plans[i]);
		*plans[i] = NULL;
	}
}

/* ----------------------------------------------------------------
 * A column of values, turned into an SQL array parameter.
 * ----------------------------------------------------------------
 */
typedef struct Column
{
	Oid			elemtype;
	int16		typlen;
	bool		byval;
	char		align;
	int			n;
	int			cap;
	Datum	   *values;
	bool	   *nulls;
} Column;

static void
col_init(Column *col, Oid elemtype, int cap)
{
	col->elemtype = elemtype;
	get_typlenbyvalalign(elemtype, &col->typlen, &col->byval, &col->align);
	col->n = 0;
	col->cap = Max(cap, 1);
	col->values = palloc(sizeof(Datum) * col->cap);
	col->nulls = palloc(sizeof(bool) * col->cap);
}

static void
col_add(Column *col, Datum value, bool isnull)
{
	if (col->n == col->cap)
	{
		col->cap *= 2;
		col->values = repalloc(col->values, sizeof(Datum) * col->cap);
		col->nulls = repalloc(col->nulls, sizeof(bool) * col->cap);
	}
	col->values[col->n] = isnull ? (Datum) 0 : value;
	col->nulls[col->n] = isnull;
	col->n++;
}

static void
col_add_text(Column *col, const char *s)
{
	col_add(col, s ? CStringGetTextDatum(s) : (Datum) 0, s == NULL);
}

static void
col_add_jsonb(Column *col, Jsonb *jb)
{
	col_add(col, jb ? JsonbPGetDatum(jb) : (Datum) 0, jb == NULL);
}

static Datum
col_array(Column *col)
{
	int			dims[1] = {col->n};
	int			lbs[1] = {1};

	return PointerGetDatum(construct_md_array(col->values, col->nulls, 1, dims, lbs,
											  col->elemtype, col->typlen,
											  col->byval, col->align));
}

/* ----------------------------------------------------------------
 * Claim
 * ----------------------------------------------------------------
 */

static void
fail_unloadable(AllmaPathState *ps, const char *flow_id, int32 version)
{
	ps->ended = true;
	ps->failed = true;
	ps->step_id = NULL;
	ps->error = allma_error_make(ALLMA_ERR_CONFIG,
								 psprintf("flow \"%s\" version %d no longer exists",
										  flow_id, version),
								 NULL);
}

/*
 * allma_store_claim locks and returns (as AllmaPathState *, allocated in
 * CurrentMemoryContext) up to "limit" runnable paths.  SPI must be
 * connected.
 */
List *
allma_store_claim(int limit)
{
	Datum		arg = Int32GetDatum(limit);
	List	   *paths = NIL;
	List	   *flow_ids = NIL;
	List	   *versions = NIL;
	ListCell   *lc,
			   *lc_id,
			   *lc_v;
	MemoryContext cxt = CurrentMemoryContext;

	if (claim_plan == NULL)
	{
		Oid			types[1] = {INT4OID};

		claim_plan = prepare(
							 "SELECT p.execution_id, p.path_id, p.branch_id, p.step_instance_id, "
							 "       p.attempt, p.seq, p.context, p.transition_counts, p.due_at, "
							 "       e.flow_id, e.flow_version, e.started_by, "
							 "       e.enable_execution_logs, e.started_at "
							 "FROM allma.execution_paths p "
							 "JOIN allma.executions e ON e.execution_id = p.execution_id "
							 "WHERE p.status = 'READY' AND p.due_at <= clock_timestamp() "
							 "ORDER BY p.due_at "
							 "LIMIT $1 "
							 "FOR UPDATE OF p SKIP LOCKED", 1, types);
	}

	if (SPI_execute_plan(claim_plan, &arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not claim allma paths");

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		AllmaPathState *ps;
		bool		isnull;
		MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
		char	   *flow_id;
		int32		version;

		ps = palloc0(sizeof(AllmaPathState));
		memcpy(&ps->execution_id,
			   DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull)), sizeof(pg_uuid_t));
		ps->path_id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		ps->branch_id = SPI_getvalue(tup, desc, 3);
		ps->step_id = SPI_getvalue(tup, desc, 4);
		ps->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		ps->seq = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
		ps->context = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 7, &isnull));
		ps->transition_counts = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 8, &isnull));
		ps->due_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 9, &isnull));
		flow_id = SPI_getvalue(tup, desc, 10);
		version = DatumGetInt32(SPI_getbinval(tup, desc, 11, &isnull));
		ps->run_as = DatumGetObjectId(SPI_getbinval(tup, desc, 12, &isnull));
		ps->logs = DatumGetBool(SPI_getbinval(tup, desc, 13, &isnull));
		ps->execution_started_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 14, &isnull));
		MemoryContextSwitchTo(oldcxt);

		paths = lappend(paths, ps);
		/* flows are resolved after the loop: loading one uses SPI */
		oldcxt = MemoryContextSwitchTo(cxt);
		flow_ids = lappend(flow_ids, flow_id);
		versions = lappend_int(versions, version);
		MemoryContextSwitchTo(oldcxt);
	}

	forthree(lc, paths, lc_id, flow_ids, lc_v, versions)
	{
		AllmaPathState *ps = lfirst(lc);

		ps->flow = allma_flow_get(lfirst(lc_id), lfirst_int(lc_v));
		if (ps->flow == NULL)
			fail_unloadable(ps, lfirst(lc_id), lfirst_int(lc_v));
	}
	return paths;
}

/* ----------------------------------------------------------------
 * Save
 * ----------------------------------------------------------------
 */

static void
execute_plan(SPIPlanPtr plan, Datum *args, int expected)
{
	int			rc = SPI_execute_plan(plan, args, NULL, false, 0);

	if (rc != expected)
		elog(ERROR, "allma batch write failed: %s", SPI_result_code_string(rc));
}

static void
save_paths(List *paths)
{
	int			n = list_length(paths);
	Column		e,
				p,
				step,
				attempt,
				seq,
				due,
				ctx,
				counts;
	Column		de,
				dp;
	ListCell   *lc;

	col_init(&e, UUIDOID, n);
	col_init(&p, INT8OID, n);
	col_init(&step, TEXTOID, n);
	col_init(&attempt, INT4OID, n);
	col_init(&seq, INT4OID, n);
	col_init(&due, TIMESTAMPTZOID, n);
	col_init(&ctx, JSONBOID, n);
	col_init(&counts, JSONBOID, n);
	col_init(&de, UUIDOID, n);
	col_init(&dp, INT8OID, n);

	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);

		if (ps->ended)
		{
			col_add(&de, UUIDPGetDatum(&ps->execution_id), false);
			col_add(&dp, Int64GetDatum(ps->path_id), false);
			continue;
		}
		col_add(&e, UUIDPGetDatum(&ps->execution_id), false);
		col_add(&p, Int64GetDatum(ps->path_id), false);
		col_add_text(&step, ps->step_id);
		col_add(&attempt, Int32GetDatum(ps->attempt), false);
		col_add(&seq, Int32GetDatum(ps->seq), false);
		col_add(&due, TimestampTzGetDatum(ps->due_at), false);
		col_add_jsonb(&ctx, ps->context);
		col_add_jsonb(&counts, ps->transition_counts);
	}

	if (e.n > 0)
	{
		Datum		args[8];

		if (update_paths_plan == NULL)
		{
			Oid			types[8] = {UUIDARRAYOID, INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
			INT4ARRAYOID, TIMESTAMPTZARRAYOID, JSONBARRAYOID, JSONBARRAYOID};

			update_paths_plan = prepare(
										"UPDATE allma.execution_paths p "
										"SET step_instance_id = u.step, attempt = u.attempt, seq = u.seq, "
										"    due_at = u.due, context = u.ctx, transition_counts = u.counts "
										"FROM unnest($1, $2, $3, $4, $5, $6, $7, $8) "
										"     AS u(e, p, step, attempt, seq, due, ctx, counts) "
										"WHERE p.execution_id = u.e AND p.path_id = u.p", 8, types);
		}
		args[0] = col_array(&e);
		args[1] = col_array(&p);
		args[2] = col_array(&step);
		args[3] = col_array(&attempt);
		args[4] = col_array(&seq);
		args[5] = col_array(&due);
		args[6] = col_array(&ctx);
		args[7] = col_array(&counts);
		execute_plan(update_paths_plan, args, SPI_OK_UPDATE);
	}

	if (de.n > 0)
	{
		Datum		args[2];

		if (delete_paths_plan == NULL)
		{
			Oid			types[2] = {UUIDARRAYOID, INT8ARRAYOID};

			delete_paths_plan = prepare(
										"DELETE FROM allma.execution_paths p "
										"USING unnest($1, $2) AS u(e, p) "
										"WHERE p.execution_id = u.e AND p.path_id = u.p", 2, types);
		}
		args[0] = col_array(&de);
		args[1] = col_array(&dp);
		execute_plan(delete_paths_plan, args, SPI_OK_DELETE);
	}
}

static int
save_terminal_executions(List *paths)
{
	int			n = list_length(paths);
	Column		e,
				status,
				output,
				error;
	ListCell   *lc;
	Datum		args[4];

	col_init(&e, UUIDOID, n);
	col_init(&status, TEXTOID, n);
	col_init(&output, JSONBOID, n);
	col_init(&error, JSONBOID, n);

	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);

		/* only the main path decides the execution's fate */
		if (!ps->ended || ps->path_id != 0)
			continue;
		col_add(&e, UUIDPGetDatum(&ps->execution_id), false);
		col_add_text(&status, ps->failed ? "FAILED" : "COMPLETED");
		col_add_jsonb(&output, ps->context);
		col_add_jsonb(&error, ps->failed ? ps->error : NULL);
	}
	if (e.n == 0)
		return 0;

	if (finish_executions_plan == NULL)
	{
		Oid			types[4] = {UUIDARRAYOID, TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID};

		finish_executions_plan = prepare(
										 "UPDATE allma.executions x "
										 "SET status = u.status, output = u.output, error = u.error, "
										 "    ended_at = clock_timestamp() "
										 "FROM unnest($1, $2, $3, $4) AS u(e, status, output, error) "
										 "WHERE x.execution_id = u.e AND x.status = 'RUNNING' "
										 "RETURNING x.execution_id::text, x.flow_id, x.status", 4, types);
	}
	args[0] = col_array(&e);
	args[1] = col_array(&status);
	args[2] = col_array(&output);
	args[3] = col_array(&error);
	execute_plan(finish_executions_plan, args, SPI_OK_UPDATE_RETURNING);

	/* NOTIFY allma_execution_events, delivered when the batch commits */
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Jsonb	   *payload = allma_jsonb_empty_object();

		payload = allma_jsonb_set_key(payload, "executionId",
									  allma_jsonb_string(SPI_getvalue(tup, desc, 1)));
		payload = allma_jsonb_set_key(payload, "flowId",
									  allma_jsonb_string(SPI_getvalue(tup, desc, 2)));
		payload = allma_jsonb_set_key(payload, "status",
									  allma_jsonb_string(SPI_getvalue(tup, desc, 3)));
		Async_Notify(ALLMA_NOTIFY_CHANNEL, allma_jsonb_to_cstring(payload));
	}
	return (int) SPI_processed;
}

static void
save_history(List *paths)
{
	Column		e,
				p,
				seq,
				branch,
				step,
				type,
				attempt,
				status,
				input,
				output,
				error,
				next,
				details,
				started,
				ended;
	ListCell   *lc;
	int			n = 0;
	Datum		args[15];

	foreach(lc, paths)
		n += list_length(((AllmaPathState *) lfirst(lc))->records);
	if (n == 0)
		return;

	col_init(&e, UUIDOID, n);
	col_init(&p, INT8OID, n);
	col_init(&seq, INT4OID, n);
	col_init(&branch, TEXTOID, n);
	col_init(&step, TEXTOID, n);
	col_init(&type, TEXTOID, n);
	col_init(&attempt, INT4OID, n);
	col_init(&status, TEXTOID, n);
	col_init(&input, JSONBOID, n);
	col_init(&output, JSONBOID, n);
	col_init(&error, JSONBOID, n);
	col_init(&next, TEXTOID, n);
	col_init(&details, JSONBOID, n);
	col_init(&started, TIMESTAMPTZOID, n);
	col_init(&ended, TIMESTAMPTZOID, n);

	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);
		ListCell   *lc2;

		foreach(lc2, ps->records)
		{
			AllmaStepRecord *rec = lfirst(lc2);

			col_add(&e, UUIDPGetDatum(&ps->execution_id), false);
			col_add(&p, Int64GetDatum(ps->path_id), false);
			col_add(&seq, Int32GetDatum(rec->seq), false);
			col_add_text(&branch, ps->branch_id);
			col_add_text(&step, rec->step_id);
			col_add_text(&type, rec->step_type);
			col_add(&attempt, Int32GetDatum(rec->attempt), false);
			col_add_text(&status, rec->status);
			col_add_jsonb(&input, rec->input);
			col_add_jsonb(&output, rec->output);
			col_add_jsonb(&error, rec->error);
			col_add_text(&next, rec->next_step);
			col_add_jsonb(&details, rec->details);
			col_add(&started, TimestampTzGetDatum(rec->started_at), false);
			col_add(&ended, TimestampTzGetDatum(rec->ended_at), false);
		}
	}

	if (insert_history_plan == NULL)
	{
		Oid			types[15] = {UUIDARRAYOID, INT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID,
			TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
			JSONBARRAYOID, JSONBARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
		TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID};

		insert_history_plan = prepare(
									  "INSERT INTO allma.step_executions "
									  "  (execution_id, path_id, seq, branch_id, step_instance_id, step_type, "
									  "   attempt, status, input, output, error, next_step_instance_id, "
									  "   details, started_at, ended_at) "
									  "SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
									  "                     $11, $12, $13, $14, $15)", 15, types);
	}
	args[0] = col_array(&e);
	args[1] = col_array(&p);
	args[2] = col_array(&seq);
	args[3] = col_array(&branch);
	args[4] = col_array(&step);
	args[5] = col_array(&type);
	args[6] = col_array(&attempt);
	args[7] = col_array(&status);
	args[8] = col_array(&input);
	args[9] = col_array(&output);
	args[10] = col_array(&error);
	args[11] = col_array(&next);
	args[12] = col_array(&details);
	args[13] = col_array(&started);
	args[14] = col_array(&ended);
	execute_plan(insert_history_plan, args, SPI_OK_INSERT);
}

/*
 * allma_store_save writes the batch back.  Returns the number of
 * executions that became terminal.  SPI must be connected.
 */
int
allma_store_save(List *paths)
{
	if (paths == NIL)
		return 0;
	save_history(paths);
	save_paths(paths);
	return save_terminal_executions(paths);
}

/*
 * allma_store_next_due: when the earliest READY path becomes due (0 when
 * there is none).
 */
TimestampTz
allma_store_next_due(void)
{
	bool		isnull;
	Datum		d;

	if (next_due_plan == NULL)
		next_due_plan = prepare("SELECT min(due_at) FROM allma.execution_paths "
								"WHERE status = 'READY'", 0, NULL);
	if (SPI_execute_plan(next_due_plan, NULL, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		return 0;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(d);
}
