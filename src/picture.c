/*-------------------------------------------------------------------------
 *
 * picture.c
 *	  Lookups and text helpers shared by the pictures of flows and
 *	  executions (graph.c: Mermaid and Graphviz graphs; timeline.c: the
 *	  SVG waterfall).
 *
 * Visibility.  The execution row, its flow definition and (in the callers)
 * its step history are read as the calling role: these functions are not
 * SECURITY DEFINER, so the row-level security on allma.executions and
 * allma.step_executions applies.  An execution the role cannot see gets the
 * same error as an unknown id, so the pictures do not reveal which
 * executions exist.
 *
 * The one exception is allma.execution_paths (where each live path of a
 * running execution stands), which only allma's own code reads.  Once the
 * caller has been shown to see the execution, its live paths' positions
 * (step, status, attempt, due time: nothing of the data) are read as the
 * bootstrap superuser, with schema-qualified names and operators so that the
 * caller's search_path cannot change what that query does.
 *
 * IDENTIFICATION
 *	  src/picture.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "jsonb_util.h"
#include "owner.h"
#include "picture.h"

static char *
uuid_text(pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}

void
allma_picture_select(const char *sql, int nargs, Oid *types, Datum *values,
					 const char *nulls, long limit)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, true, limit);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "allma: query failed (%s): %s", SPI_result_code_string(rc), sql);
}

void
allma_picture_execution(pg_uuid_t *id, AllmaPictureExecution *ex)
{
	Oid			types[1] = {UUIDOID};
	Datum		values[1] = {UUIDPGetDatum(id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	/*
	 * As the caller: RLS on allma.executions hides the executions the role
	 * may not see, and flow_versions is read with the role's privileges.
	 */
	allma_picture_select("SELECT e.flow_id, e.flow_version, e.status, e.started_at, "
							   "       e.ended_at, e.options->>'startStepInstanceId', "
							   "       e.error->>'errorName', v.definition, clock_timestamp() "
							   "  FROM allma.executions e "
							   "  LEFT JOIN allma.flow_versions v "
							   "    ON v.flow_id = e.flow_id AND v.version = e.flow_version "
							   " WHERE e.execution_id = $1",
							   1, types, values, NULL, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("execution %s does not exist", uuid_text(id))));

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	memset(ex, 0, sizeof(*ex));
	memcpy(&ex->id, id, sizeof(pg_uuid_t));
	ex->flow_id = SPI_getvalue(tup, desc, 1);
	ex->version = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
	ex->status = SPI_getvalue(tup, desc, 3);
	ex->started_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
	d = SPI_getbinval(tup, desc, 5, &isnull);
	ex->has_ended = !isnull;
	if (!isnull)
		ex->ended_at = DatumGetTimestampTz(d);
	ex->start_step = SPI_getvalue(tup, desc, 6);
	ex->error_name = SPI_getvalue(tup, desc, 7);
	d = SPI_getbinval(tup, desc, 8, &isnull);
	ex->definition = isnull ? NULL : DatumGetJsonbPCopy(d);
	ex->now = DatumGetTimestampTz(SPI_getbinval(tup, desc, 9, &isnull));
}

List *
allma_picture_live_paths(AllmaPictureExecution *ex, int limit, bool *truncated)
{
	MemoryContext mine = CurrentMemoryContext;
	AllmaAsOwner st;
	Oid			types[2] = {UUIDOID, INT4OID};
	Datum		values[2];
	List	   *paths = NIL;
	uint64		i;

	values[0] = UUIDPGetDatum(&ex->id);
	values[1] = Int32GetDatum(limit + 1);
	*truncated = false;

	allma_owner_begin(&st);
	allma_owner_exec("SELECT path_id, branch_id, step_instance_id, status, attempt, due_at "
					 "  FROM allma.execution_paths "
					 " WHERE execution_id OPERATOR(pg_catalog.=) $1 "
					 " ORDER BY path_id LIMIT $2",
					 2, types, values, NULL, SPI_OK_SELECT);

	/* copy the rows out before the owner's SPI connection goes away */
	MemoryContextSwitchTo(mine);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		AllmaLivePath *lp;
		bool		isnull;

		if (i == (uint64) limit)
		{
			*truncated = true;
			break;
		}
		lp = palloc0(sizeof(AllmaLivePath));
		lp->path_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		lp->branch_id = SPI_getvalue(tup, desc, 2);
		lp->step_id = SPI_getvalue(tup, desc, 3);
		lp->status = SPI_getvalue(tup, desc, 4);
		lp->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		lp->due_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &isnull));
		paths = lappend(paths, lp);
	}
	allma_owner_end(&st);
	return paths;
}

bool
allma_picture_path_running(AllmaLivePath *lp, TimestampTz now)
{
	if (lp->step_id == NULL)
		return false;
	if (strcmp(lp->status, "INFLIGHT") == 0)
		return true;
	return strcmp(lp->status, "READY") == 0 && lp->due_at <= now;
}

void
allma_picture_append_duration(StringInfo buf, int64 usecs)
{
	if (usecs < 0)
		usecs = 0;
	if (usecs < INT64CONST(1000000))
		appendStringInfo(buf, "%.1f ms", (double) usecs / 1000.0);
	else if (usecs < INT64CONST(60000000))
		appendStringInfo(buf, "%.2f s", (double) usecs / 1000000.0);
	else if (usecs < INT64CONST(3600000000))
	{
		int64		secs = usecs / INT64CONST(1000000);

		appendStringInfo(buf, "%d min %02d s", (int) (secs / 60), (int) (secs % 60));
	}
	else
	{
		int64		mins = usecs / INT64CONST(60000000);

		appendStringInfo(buf, "%lld h %02d min", (long long) (mins / 60), (int) (mins % 60));
	}
}

char *
allma_picture_clip(const char *s, int max_chars)
{
	int			len = strlen(s);
	int			keep;

	if (pg_mbstrlen_with_len(s, len) <= max_chars)
		return pstrdup(s);
	keep = pg_mbcharcliplen(s, len, max_chars - 3);
	return psprintf("%.*s...", keep, s);
}

char *
allma_picture_step_type(Jsonb *step)
{
	char	   *type = allma_jsonb_get_cstring(step, "stepType");
	char	   *from;

	if (type != NULL)
		return type;
	from = allma_jsonb_get_cstring(step, "stepDefinitionId");
	if (from != NULL)
		return psprintf("(from %s)", from);
	return pstrdup("(no stepType)");
}
