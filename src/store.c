/*-------------------------------------------------------------------------
 *
 * store.c
 *	  The worker's SQL: claiming runnable paths and writing back a batch.
 *
 * Every statement is a saved SPI plan, prepared on first use and dropped
 * when the extension is re-created (allma_store_reset).
 *
 * Claim: one statement locks up to allma.batch_size READY paths whose
 * due_at has passed, in claim order (due time moved by priority,
 * priority.c), with FOR UPDATE SKIP LOCKED, so that
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
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "concurrency.h"
#include "errors.h"
#include "flowcache.h"
#include "jsonb_util.h"
#include "lifecycle.h"
#include "pathstate.h"
#include "priority.h"
#include "spicache.h"
#include "listeners.h"
#include "shmem.h"
#include "store.h"
#include "store_internal.h"
#include "steps/completion.h"

/* the worker slot recorded as the owner of INFLIGHT paths */
int			allma_store_owner_slot = -1;

static SPIPlanPtr claim_plan = NULL;

/*
 * The claim's floor.  Paths leave the claim index's key order at its low
 * end (each claimed path is updated out of READY), and the entries of the
 * old row versions stay in the index until a vacuum: a wide fork leaves a
 * million of them, which a claim reading from the start walks every time
 * (thousands of index pages per claim at a million branches).  So while
 * claims come back full, the next claim starts at the lowest key the last
 * one took (an index condition: the walk is skipped): what is still READY
 * below it is either locked by another worker or became due below it since
 * (a high priority, a past due time), and the claim reads from the start
 * again once it finds less than a batch, and at least every
 * CLAIM_FULL_SCAN_EVERY claims or CLAIM_FULL_SCAN_MS, whichever comes
 * first: under a full queue such a path waits at most that long.  (Counted
 * in claims first, so that the share of claims that walk the old entries
 * does not grow when passes slow down.)  The floor is shared by the
 * workers (shmem.c): a worker whose last claim is a while back (it waited
 * for a turn) would otherwise walk every entry the others claimed since.
 */
#define CLAIM_FULL_SCAN_EVERY 16
#define CLAIM_FULL_SCAN_MS 1000
static TimestampTz last_full_claim = 0;
static int	claims_since_full = 0;
static SPIPlanPtr update_paths_plan = NULL;
static SPIPlanPtr delete_paths_plan = NULL;
static SPIPlanPtr save_executions_plan = NULL;
static SPIPlanPtr insert_history_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;
static SPIPlanPtr next_deadline_plan = NULL;

static SPIPlanPtr claim_inflight_plan = NULL;
static SPIPlanPtr release_inflight_plan = NULL;
static SPIPlanPtr refresh_plan = NULL;
static SPIPlanPtr release_waits_plan = NULL;
static SPIPlanPtr claim_suspect_plan = NULL;
static SPIPlanPtr suspects_plan = NULL;

/*
 * prepare makes a saved plan.  SPI_prepare leaves the SPI procedure
 * context current; the caller's context is restored, so that what the
 * caller allocates next (claimed paths, say) does not vanish at SPI_finish.
 */
static SPIPlanPtr
prepare(const char *sql, int nargs, Oid *types)
{
	MemoryContext cxt = CurrentMemoryContext;
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	MemoryContextSwitchTo(cxt);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * prepare_keyed makes a saved plan for a statement that takes a batch of
 * keys as arrays.  Its plan is always the generic one (planned once, for an
 * array of unknown length), and the statement repeats its keys as
 * "= ANY ($n)" conditions on the table's key: a custom plan would be made
 * for each batch's actual arrays, and for a few hundred keys against a
 * table whose statistics are stale (analyzed when it was nearly empty) it
 * flips to a hash join over a sequential scan of the whole table, every
 * pass, while the table holds 100,000 rows.  Measured with EXPLAIN on such
 * a table: the custom plans scanned it for 64 keys and more, the generic
 * plans with the "= ANY" conditions read only the keys' index entries.
 */
static SPIPlanPtr
prepare_keyed(const char *sql, int nargs, Oid *types)
{
	MemoryContext cxt = CurrentMemoryContext;
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);

	MemoryContextSwitchTo(cxt);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/* allma_store_keyed_prepare: the same, for the worker's other batch statements */
SPIPlanPtr
allma_store_keyed_prepare(const char *sql, int nargs, Oid *types)
{
	return prepare_keyed(sql, nargs, types);
}

/* allma_store_prepare: a saved plan, for the worker's other statements (retention, completion actions) */
SPIPlanPtr
allma_store_prepare(const char *sql, int nargs, Oid *types)
{
	return prepare(sql, nargs, types);
}

void
allma_store_reset(void)
{
	SPIPlanPtr *plans[] = {&claim_plan, &update_paths_plan, &delete_paths_plan,
	&save_executions_plan, &insert_history_plan, &next_due_plan, &next_deadline_plan,
	&claim_inflight_plan, &release_inflight_plan, &refresh_plan, &release_waits_plan,
	&claim_suspect_plan, &suspects_plan};

	for (int i = 0; i < lengthof(plans); i++)
	{
		if (*plans[i] != NULL)
			SPI_freeplan(*plans[i]);
		*plans[i] = NULL;
	}
	allma_shmem_set_claim_floor(DT_NOBEGIN);
	allma_store_forks_reset();
}

/* ----------------------------------------------------------------
 * Claim
 * ----------------------------------------------------------------
 */

/* what a claim returns of path p; CLAIM_JOINS supplies e and f */
#define CLAIM_SELECT \
	"SELECT p.execution_id, p.path_id, p.branch_id, p.step_instance_id, " \
	"       p.attempt, p.seq, p.context, p.transition_counts, p.due_at, " \
	"       e.flow_id, e.flow_version, e.started_by, " \
	"       e.enable_execution_logs, e.started_at, " \
	"       coalesce(p.parent_path_id, -1), coalesce(p.item_index, 0), " \
	"       coalesce(p.branch_ordinal, 0), p.joining, " \
	"       f.step_instance_id, f.base_context, p.request, " \
	"       e.step_count, e.depth, coalesce(e.root_execution_id, e.execution_id), " \
	"       e.parent_execution_id, e.parent_path_id IS NOT NULL, p.priority "
/*
 * The execution and fork of each claimed path, looked up by key: LATERAL
 * subqueries with OFFSET 0 are planned on their own, with the path's key as
 * their only condition, so the claimed paths always drive the lookups.
 */
#define CLAIM_JOINS \
	"CROSS JOIN LATERAL (SELECT * FROM allma.executions x " \
	"  WHERE x.execution_id = p.execution_id OFFSET 0) e " \
	"LEFT JOIN LATERAL (SELECT * FROM allma.forks y " \
	"  WHERE y.execution_id = p.execution_id AND y.fork_path_id = p.parent_path_id OFFSET 0) f " \
	"  ON true "

static List *paths_from_claim(void);

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
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz claim_floor = allma_shmem_claim_floor();
	bool		full = claim_floor == DT_NOBEGIN || ++claims_since_full >= CLAIM_FULL_SCAN_EVERY ||
		TimestampDifferenceExceeds(last_full_claim, now, CLAIM_FULL_SCAN_MS);
	Datum		args[3] = {Int32GetDatum(limit), TimestampTzGetDatum(now),
	TimestampTzGetDatum(full ? DT_NOBEGIN : claim_floor)};
	List	   *paths;
	ListCell   *lc;
	int			sort_level;

	if (claim_plan == NULL)
	{
		Oid			types[3] = {INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID};

		/*
		 * The paths are picked and locked first, by the claim index in
		 * claim order (due time moved by priority, priority.c), and only
		 * those are joined: joining before the LIMIT would cost every
		 * claim a pass over all runnable paths.  $2 is the claim's time, a
		 * parameter rather than clock_timestamp(), so that the bound on the
		 * key is an index condition: the scan stops at the last key a due
		 * path can have (the time plus the lowest priority's delay) instead
		 * of reading every later timer when fewer than $1 paths are due;
		 * the filter skips high-priority timers not due yet (written as
		 * claim_order(due_at, 0), which is due_at, so that the planner
		 * cannot read the READY index by due time and sort).
		 */
		claim_plan = prepare("WITH picked AS MATERIALIZED ("
							 "  SELECT * FROM allma.execution_paths "
							 "  WHERE status = 'READY' "
							 "    AND allma.claim_order(due_at, priority) <= "
							 "        allma.claim_order($2, " CppAsString2(ALLMA_PRIORITY_MIN) ") "
							 "    AND allma.claim_order(due_at, 0) <= $2 "
							 "    AND allma.claim_order(due_at, priority) >= $3 "
							 /* not a dead worker's path: those run alone (claim_suspect) */
							 "    AND NOT EXISTS (SELECT FROM allma.path_failures s "
							 "      WHERE s.execution_id = execution_paths.execution_id "
							 "        AND s.path_id = execution_paths.path_id "
							 "        AND s.crash_seq = execution_paths.seq) "
							 "  ORDER BY allma.claim_order(due_at, priority) LIMIT $1 "
							 "  FOR UPDATE SKIP LOCKED) "
							 CLAIM_SELECT "FROM picked p " CLAIM_JOINS
							 "ORDER BY allma.claim_order(p.due_at, p.priority)", 3, types);
	}

	/*
	 * Planned, and run, with sorts off as well (allma_spi_ordered_begin): on
	 * statistics an ANALYZE took during a burst, the primary key's index
	 * with a filter on the status and a sort looked as cheap as the claim
	 * index, and every claim then read every row of the table (claims of
	 * up to 1.9 s at 60,000 runnable paths, bench/RESULTS.md "More workers
	 * never slower").  The claim index gives the order itself.
	 */
	sort_level = allma_spi_ordered_begin();
	execute_plan(claim_plan, args, SPI_OK_SELECT);
	allma_spi_keyed_end(sort_level);
	paths = paths_from_claim();

	/*
	 * The next claim starts at the lowest key claimed now while batches
	 * come full; a claim that finds less than a batch, and one every
	 * CLAIM_FULL_SCAN_MS, reads from the start again.
	 */
	if (full)
	{
		last_full_claim = now;
		claims_since_full = 0;
	}
	if (list_length(paths) < limit)
		claim_floor = DT_NOBEGIN;
	else
	{
		claim_floor = DT_NOEND;
		foreach(lc, paths)
		{
			AllmaPathState *ps = lfirst(lc);
			TimestampTz key = DatumGetTimestampTz(DirectFunctionCall2(allma_claim_order,
																	  TimestampTzGetDatum(ps->due_at),
																	  Int32GetDatum(ps->priority)));

			claim_floor = Min(claim_floor, key);
		}
	}
	allma_shmem_set_claim_floor(claim_floor);
	return paths;
}

/*
 * allma_store_claim_suspect locks and returns one READY path that is a
 * suspect at the step it is at (it was in the pass of a worker that died:
 * passmark.c), if no other worker holds it; such a path is run alone.
 * The counts are read first (a handful of rows, usually none), then each
 * path is looked up by primary key.  SPI must be connected.
 */
List *
allma_store_claim_suspect(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	SPITupleTable *suspects;
	uint64		n;

	if (suspects_plan == NULL)
		suspects_plan = prepare("SELECT execution_id, path_id, crash_seq FROM allma.path_failures "
								"WHERE crash_seq IS NOT NULL LIMIT 32", 0, NULL);
	if (claim_suspect_plan == NULL)
	{
		Oid			types[3] = {UUIDOID, INT8OID, INT4OID};

		claim_suspect_plan = prepare_keyed(CLAIM_SELECT
										   "FROM allma.execution_paths p "
										   CLAIM_JOINS
										   "WHERE p.execution_id = $1 AND p.path_id = $2 AND p.seq = $3 "
										   "  AND p.status = 'READY' "
										   "FOR UPDATE OF p SKIP LOCKED", 3, types);
	}
	execute_plan(suspects_plan, NULL, SPI_OK_SELECT);
	suspects = SPI_tuptable;
	n = SPI_processed;
	for (uint64 i = 0; i < n; i++)
	{
		Datum		args[3];
		bool		isnull;
		List	   *paths;

		for (int c = 0; c < 3; c++)
		{
			args[c] = SPI_getbinval(suspects->vals[i], suspects->tupdesc, c + 1, &isnull);
			if (isnull)
				break;
		}
		if (isnull)
			continue;
		execute_plan(claim_suspect_plan, args, SPI_OK_SELECT);
		MemoryContextSwitchTo(cxt);
		paths = paths_from_claim();
		if (paths != NIL)
			return paths;
	}
	MemoryContextSwitchTo(cxt);
	return NIL;
}

/*
 * allma_store_claim_inflight locks the INFLIGHT paths named by the keys
 * (execution, path, attempt, seq) of responses that arrived, so that their
 * steps can complete.  A key whose path moved on (its lease expired and
 * another worker took it, or it went on to another step, whose attempt
 * may be the same but whose seq is not) matches nothing: a late response
 * never completes another request's step.
 */
List *
allma_store_claim_inflight(int n, pg_uuid_t *executions, int64 *path_ids, int32 *attempts,
						   int32 *seqs)
{
	Column		e,
				p,
				a,
				q;
	Datum		args[4];

	col_init(&e, UUIDOID, n);
	col_init(&p, INT8OID, n);
	col_init(&a, INT4OID, n);
	col_init(&q, INT4OID, n);
	for (int i = 0; i < n; i++)
	{
		col_add(&e, UUIDPGetDatum(&executions[i]), false);
		col_add(&p, Int64GetDatum(path_ids[i]), false);
		col_add(&a, Int32GetDatum(attempts[i]), false);
		col_add(&q, Int32GetDatum(seqs[i]), false);
	}
	if (claim_inflight_plan == NULL)
	{
		Oid			types[4] = {UUIDARRAYOID, INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID};

		/*
		 * Each key is looked up by primary key (the LATERAL subquery with
		 * OFFSET 0 is planned on its own, and has nothing but the key to
		 * go by).  Joined plainly, the planner may pick the partial index
		 * of INFLIGHT paths from statistics taken when few were in flight,
		 * and with thousands in flight read it once per key.
		 */
		claim_inflight_plan = prepare_keyed(CLAIM_SELECT
									  "FROM unnest($1, $2, $3, $4) AS u(e, pid, att, seq) "
									  "CROSS JOIN LATERAL (SELECT * FROM allma.execution_paths x "
									  "  WHERE x.execution_id = u.e AND x.path_id = u.pid OFFSET 0) p "
									  CLAIM_JOINS
									  "WHERE p.attempt = u.att AND p.seq = u.seq AND p.status = 'INFLIGHT' "
									  "FOR UPDATE OF p", 4, types);
	}
	args[0] = col_array(&e);
	args[1] = col_array(&p);
	args[2] = col_array(&a);
	args[3] = col_array(&q);
	execute_plan(claim_inflight_plan, args, SPI_OK_SELECT);
	return paths_from_claim();
}

/*
 * allma_store_release_inflight makes INFLIGHT paths runnable again: those
 * of a worker slot whose previous process is gone (slot >= 0), or all whose
 * lease expired (slot < 0).  Their step runs again and resends its request
 * with the same Idempotency-Key.  Returns how many.
 */
int
allma_store_release_inflight(int slot)
{
	Datum		arg = Int32GetDatum(slot);

	if (release_inflight_plan == NULL)
	{
		Oid			types[1] = {INT4OID};

		release_inflight_plan = prepare("UPDATE allma.execution_paths "
										"SET status = 'READY', due_at = clock_timestamp(), request = NULL, "
										"    lease_until = NULL, owner_slot = NULL "
										"WHERE status = 'INFLIGHT' "
										"  AND ($1 < 0 AND lease_until < clock_timestamp() OR owner_slot = $1)",
										1, types);
	}
	execute_plan(release_inflight_plan, &arg, SPI_OK_UPDATE);
	return (int) SPI_processed;
}

/*
 * refresh_execution_state reads the status of the claimed paths'
 * executions in a statement of its own: its snapshot is taken after
 * the claim locked the paths, so it sees whatever the passes that held them
 * committed (the claim's own snapshot may predate them).  Paths of
 * executions that are no longer RUNNING (cancelled, timed out) are dropped
 * and deleted: they never run a step.  Completion-action paths (negative
 * path ids) are the exception: they run after their execution ended.  The flow_ids and versions lists,
 * parallel to paths, lose the same elements.
 */
static List *
refresh_execution_state(List *paths, List **flow_ids, List **versions)
{
	Column		e;
	Datum		arg;
	ListCell   *lc;
	List	   *kept = NIL,
			   *kept_ids = NIL,
			   *kept_versions = NIL;
	pg_uuid_t  *dead;
	int			ndead = 0;
	MemoryContext cxt = CurrentMemoryContext;
	int			i = 0;

	if (paths == NIL)
		return NIL;
	col_init(&e, UUIDOID, list_length(paths));
	foreach(lc, paths)
		col_add(&e, UUIDPGetDatum(&((AllmaPathState *) lfirst(lc))->execution_id), false);
	if (refresh_plan == NULL)
	{
		Oid			types[1] = {UUIDARRAYOID};

		refresh_plan = prepare_keyed("SELECT x.execution_id, x.status = 'RUNNING' "
							   "FROM allma.executions x WHERE x.execution_id = ANY ($1)", 1, types);
	}
	arg = col_array(&e);
	execute_plan(refresh_plan, &arg, SPI_OK_SELECT);

	dead = palloc(sizeof(pg_uuid_t) * list_length(paths));
	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);
		bool		running = false;

		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			bool		isnull;

			if (memcmp(DatumGetUUIDP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull)),
					   &ps->execution_id, sizeof(pg_uuid_t)) != 0)
				continue;
			running = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
			break;
		}
		if (running || ps->path_id < 0)
		{
			kept = lappend(kept, ps);
			kept_ids = lappend(kept_ids, list_nth(*flow_ids, i));
			kept_versions = lappend_int(kept_versions, list_nth_int(*versions, i));
		}
		else
			dead[ndead++] = ps->execution_id;
		i++;
	}
	MemoryContextSwitchTo(cxt);
	allma_lifecycle_drop_paths(ndead, dead);
	MemoryContextSwitchTo(cxt);
	*flow_ids = kept_ids;
	*versions = kept_versions;
	return kept;
}

/*
 * allma_store_release_due_waits: parked paths (WAIT_FOR_EXTERNAL_EVENT)
 * whose deadline passed become READY, and their waits TIMED_OUT, at most
 * "limit" of them, those nobody holds (a resume in progress holds its path
 * first: whichever locks the path first decides).  The claim then runs
 * their steps, which fail with StepTimeoutError.  Found through the partial
 * index of parked paths by deadline: open waits cost nothing until due.
 * The time is a parameter, not clock_timestamp() in the statement: a
 * volatile function cannot bound an index scan, and the scan would walk
 * every parked path's entry (and fetch its row) on every pass.
 * Returns how many.
 */
int
allma_store_release_due_waits(int limit)
{
	Datum		args[2];

	if (release_waits_plan == NULL)
	{
		Oid			types[2] = {INT4OID, TIMESTAMPTZOID};

		MemoryContext cxt = CurrentMemoryContext;
		SPIPlanPtr	plan;

		/*
		 * No join for the planner to turn round: each due row's wait is
		 * found by its primary key in a subquery of its own, and both
		 * updates take their rows by ctid (a join planned while the tables'
		 * statistics said "empty", after a VACUUM of emptied tables, scanned
		 * every wait for every due row).  A wait's ctid cannot go stale
		 * unnoticed: an update of it in between (a cancel) is rechecked.
		 * Each due row's wait is looked up by its primary key.  Its status
		 * is compared as an expression (status || ''): "status = 'OPEN'"
		 * is the predicate of the partial index of open waits, and a plan
		 * made while allma.waits has no statistics (the first pass after
		 * CREATE EXTENSION) walked that whole index once per due row,
		 * 10,000 due waits took 9 s.  A generic plan, always: the plan
		 * must not depend on how many are due.
		 */
		plan = SPI_prepare_cursor(
								  "WITH due AS ("
								  "  SELECT p.ctid AS t, p.execution_id, p.path_id, p.request->'wait' AS w "
								  "    FROM allma.execution_paths p "
								  "   WHERE p.status = 'WAITING' AND p.request ? 'wait' "
								  "     AND p.due_at <= $2 "
								  "   ORDER BY p.due_at LIMIT $1 FOR UPDATE OF p SKIP LOCKED), "
								  "timed AS ("
								  "  UPDATE allma.waits x SET status = 'TIMED_OUT', ended_at = clock_timestamp() "
								  "   WHERE x.ctid = ANY (ARRAY("
								  "           SELECT (SELECT y.ctid FROM allma.waits y "
								  "                    WHERE y.root_execution_id = (due.w->>'rootExecutionId')::uuid "
								  "                      AND y.execution_id = due.execution_id "
								  "                      AND y.path_id = due.path_id "
								  "                      AND y.seq = (due.w->>'seq')::int4) "
								  "             FROM due)) "
								  "     AND x.status || '' = 'OPEN') "
								  "UPDATE allma.execution_paths p SET status = 'READY' "
								  " WHERE p.ctid = ANY (ARRAY(SELECT t FROM due))",
								  2, types, CURSOR_OPT_GENERIC_PLAN);
		MemoryContextSwitchTo(cxt);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for the release of due waits: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		release_waits_plan = plan;
	}
	args[0] = Int32GetDatum(limit);
	args[1] = TimestampTzGetDatum(GetCurrentTimestamp());
	execute_plan(release_waits_plan, args, SPI_OK_UPDATE);
	return (int) SPI_processed;
}

/* paths_from_claim turns the claim query's rows into AllmaPathStates */
static List *
paths_from_claim(void)
{
	List	   *paths = NIL;
	List	   *flow_ids = NIL;
	List	   *versions = NIL;
	ListCell   *lc,
			   *lc_id,
			   *lc_v;
	MemoryContext cxt = CurrentMemoryContext;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		AllmaPathState *ps;
		bool		isnull;
		MemoryContext oldcxt;
		char	   *flow_id;
		int32		version;

		oldcxt = MemoryContextSwitchTo(cxt);
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
		ps->parent_path_id = DatumGetInt64(SPI_getbinval(tup, desc, 15, &isnull));
		ps->is_branch = ps->parent_path_id >= 0;
		ps->item_index = DatumGetInt32(SPI_getbinval(tup, desc, 16, &isnull));
		ps->branch_ordinal = DatumGetInt32(SPI_getbinval(tup, desc, 17, &isnull));
		ps->joining = DatumGetBool(SPI_getbinval(tup, desc, 18, &isnull));
		ps->fork_step_id = SPI_getvalue(tup, desc, 19);
		{
			Datum		base = SPI_getbinval(tup, desc, 20, &isnull);

			if (!isnull)
			{
				/* a branch: its row holds only what differs from the fork's base */
				ps->base_context = DatumGetJsonbPCopy(base);
				ps->context = allma_jsonb_concat(ps->base_context, ps->context);
			}
		}
		{
			Datum		req = SPI_getbinval(tup, desc, 21, &isnull);

			ps->prev_request = isnull ? NULL : DatumGetJsonbPCopy(req);
		}
		ps->step_count = DatumGetInt32(SPI_getbinval(tup, desc, 22, &isnull));
		ps->depth = DatumGetInt32(SPI_getbinval(tup, desc, 23, &isnull));
		memcpy(&ps->root_execution_id,
			   DatumGetUUIDP(SPI_getbinval(tup, desc, 24, &isnull)), sizeof(pg_uuid_t));
		{
			Datum		parent = SPI_getbinval(tup, desc, 25, &isnull);

			ps->has_parent = !isnull;
			if (!isnull)
				memcpy(&ps->parent_execution_id, DatumGetUUIDP(parent), sizeof(pg_uuid_t));
		}
		ps->sync_child = DatumGetBool(SPI_getbinval(tup, desc, 26, &isnull));
		ps->priority = DatumGetInt32(SPI_getbinval(tup, desc, 27, &isnull));
		MemoryContextSwitchTo(oldcxt);

		paths = lappend(paths, ps);
		/* flows are resolved after the loop: loading one uses SPI */
		oldcxt = MemoryContextSwitchTo(cxt);
		flow_ids = lappend(flow_ids, flow_id);
		versions = lappend_int(versions, version);
		MemoryContextSwitchTo(oldcxt);
	}

	paths = refresh_execution_state(paths, &flow_ids, &versions);

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

/*
 * execute_keyed runs one of allma's saved statements.  They all work on a
 * batch of keys (or a LIMIT in index order), so the right plan is always
 * "for each key, look it up by index" -- whatever the statistics say.
 * Statistics of these tables go stale within seconds (thousands of paths
 * change status at once, tables start empty), and a generic plan made from
 * them (a sequential scan, a hash of a whole partial index) would be kept
 * and cost every batch a pass over a table.  So they are planned with
 * sequential scans, bitmap scans, hash and merge joins disabled, which the
 * planner still uses where nothing else is possible.
 */
static int
execute_keyed(SPIPlanPtr plan, Datum *args, const char *nulls, bool read_only, long count)
{
	return allma_spi_execute_keyed(plan, args, nulls, read_only, count);
}

/*
 * execute_plan runs a saved plan and checks its result.  SPI leaves its own
 * procedure context current after a call; the caller's is restored, so
 * that what the worker allocates next outlives SPI_finish.
 */
void
allma_store_execute_plan(SPIPlanPtr plan, Datum *args, int expected)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			rc;

	rc = execute_keyed(plan, args, NULL, false, 0);
	MemoryContextSwitchTo(cxt);
	if (rc != expected)
		elog(ERROR, "allma batch write failed: %s", SPI_result_code_string(rc));
}

/*
 * overlay_of: what a branch stores: the keys of its context whose value
 * differs from the fork's base context.
 */
static Jsonb *
overlay_of(AllmaPathState *ps)
{
	Jsonb	   *overlay = allma_jsonb_empty_object();
	List	   *keys;
	ListCell   *lc;

	if (ps->base_context == NULL)
		return ps->context;
	keys = allma_jsonb_object_keys(ps->context);
	foreach(lc, keys)
	{
		char	   *key = lfirst(lc);
		Jsonb	   *mine = allma_jsonb_get(ps->context, key);
		Jsonb	   *base = allma_jsonb_get(ps->base_context, key);

		if (base == NULL ||
			!DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(mine),
											  JsonbPGetDatum(base))))
			overlay = allma_jsonb_set_key(overlay, key, mine);
	}
	return overlay;
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
				counts,
				status,
				request,
				lease;
	Column		de,
				dp;
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();

	col_init(&request, JSONBOID, n);
	col_init(&lease, TIMESTAMPTZOID, n);
	col_init(&e, UUIDOID, n);
	col_init(&p, INT8OID, n);
	col_init(&step, TEXTOID, n);
	col_init(&attempt, INT4OID, n);
	col_init(&seq, INT4OID, n);
	col_init(&due, TIMESTAMPTZOID, n);
	col_init(&ctx, JSONBOID, n);
	col_init(&counts, JSONBOID, n);
	col_init(&status, TEXTOID, n);
	col_init(&de, UUIDOID, n);
	col_init(&dp, INT8OID, n);

	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);

		if (ps->ended)
		{
			/* finished branches stay until their fork joins (save_branches) */
			if (!ps->is_branch)
			{
				col_add(&de, UUIDPGetDatum(&ps->execution_id), false);
				col_add(&dp, Int64GetDatum(ps->path_id), false);
			}
			continue;
		}
		col_add(&e, UUIDPGetDatum(&ps->execution_id), false);
		col_add(&p, Int64GetDatum(ps->path_id), false);
		col_add_text(&step, ps->step_id);
		col_add(&attempt, Int32GetDatum(ps->attempt), false);
		col_add(&seq, Int32GetDatum(ps->seq), false);
		col_add(&due, TimestampTzGetDatum(ps->due_at), false);
		col_add_jsonb(&ctx, overlay_of(ps));
		col_add_jsonb(&counts, ps->transition_counts);
		col_add_text(&status, ps->inflight ? "INFLIGHT" : ps->waiting ? "WAITING" : "READY");
		col_add_jsonb(&request, ps->inflight ? ps->io_request :
					  ps->waiting ? ps->wait_record : NULL);
		if (ps->inflight)
		{
			double		timeout_ms = allma_http_timeout_ms;

			(void) allma_jsonb_get_number(ps->io_request, "timeoutMs", &timeout_ms);
			col_add(&lease, TimestampTzGetDatum(TimestampTzPlusMilliseconds(now, (int64) timeout_ms + 60000)),
					false);
		}
		else
			col_add(&lease, (Datum) 0, true);
	}

	if (e.n > 0)
	{
		Datum		args[12];

		if (update_paths_plan == NULL)
		{
			Oid			types[12] = {UUIDARRAYOID, INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
				INT4ARRAYOID, TIMESTAMPTZARRAYOID, JSONBARRAYOID, JSONBARRAYOID,
			TEXTARRAYOID, JSONBARRAYOID, TIMESTAMPTZARRAYOID, INT4OID};

			update_paths_plan = prepare_keyed(
										"UPDATE allma.execution_paths p "
										"SET step_instance_id = u.step, attempt = u.attempt, seq = u.seq, "
										"    due_at = u.due, context = u.ctx, transition_counts = u.counts, "
										"    status = u.status, joining = false, request = u.req, "
										"    lease_until = u.lease, "
										"    owner_slot = CASE WHEN u.status = 'INFLIGHT' THEN $12 END "
										"FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
										"     AS u(e, p, step, attempt, seq, due, ctx, counts, status, req, lease) "
										"WHERE p.execution_id = u.e AND p.path_id = u.p "
										"  AND p.execution_id = ANY ($1) AND p.path_id = ANY ($2)", 12, types);
		}
		args[0] = col_array(&e);
		args[1] = col_array(&p);
		args[2] = col_array(&step);
		args[3] = col_array(&attempt);
		args[4] = col_array(&seq);
		args[5] = col_array(&due);
		args[6] = col_array(&ctx);
		args[7] = col_array(&counts);
		args[8] = col_array(&status);
		args[9] = col_array(&request);
		args[10] = col_array(&lease);
		args[11] = Int32GetDatum(allma_store_owner_slot);
		execute_plan(update_paths_plan, args, SPI_OK_UPDATE);
	}

	if (de.n > 0)
	{
		Datum		args[2];

		if (delete_paths_plan == NULL)
		{
			Oid			types[2] = {UUIDARRAYOID, INT8ARRAYOID};

			delete_paths_plan = prepare_keyed(
										"DELETE FROM allma.execution_paths p "
										"USING unnest($1, $2) AS u(e, p) "
										"WHERE p.execution_id = u.e AND p.path_id = u.p "
										"  AND p.execution_id = ANY ($1) AND p.path_id = ANY ($2)", 2, types);
		}
		args[0] = col_array(&de);
		args[1] = col_array(&dp);
		execute_plan(delete_paths_plan, args, SPI_OK_DELETE);
	}
}

typedef struct ExecutionWrite
{
	pg_uuid_t	execution_id;
	int32		n;				/* step attempts recorded in this batch */
	AllmaPathState *main;		/* its main path, when that ended here */
	bool		parked;			/* a path of it parks (WAITING) in this batch */
} ExecutionWrite;

static int
execution_write_cmp(const void *a, const void *b)
{
	return memcmp(&((const ExecutionWrite *) a)->execution_id,
				  &((const ExecutionWrite *) b)->execution_id, sizeof(pg_uuid_t));
}

/*
 * save_executions writes what the batch did to its executions in one
 * statement: every execution's step_count grows by the step attempts the
 * batch recorded, and the executions whose main path ended (only the main
 * path decides an execution's fate) get their status, output, error and
 * ended_at.  One row per execution, in execution id order, so that workers
 * updating the same executions take their row locks in the same order.
 *
 * An execution that another transaction ended meanwhile (cancelled, timed
 * out) keeps that end; only its step_count grows.  Returns the number of
 * executions this batch ended; their NOTIFYs and completion actions are
 * queued in the same transaction.
 *
 * Executions of which a path parks (WAITING: an external event, a sync
 * sub-flow) are written too, even without a step attempt: the row lock
 * orders this batch with a cancel or a time-out of the execution.  One that
 * ended first (while this pass held the path, which the ending skipped)
 * has its paths dropped, its waits released and the sub-flows the pass
 * started ended here (allma_lifecycle_drop_parked), instead of a parked
 * path staying until its deadline; one that ends after this batch commits
 * finds the parked path and its wait committed, and drops them itself.
 */
static int
save_executions(List *paths)
{
	ExecutionWrite *w = palloc(sizeof(ExecutionWrite) * Max(list_length(paths), 1));
	int			n = 0;
	pg_uuid_t  *parked_ids;
	int			nparked = 0;
	Column		e,
				count,
				status,
				output,
				error;
	Datum		args[5];
	ListCell   *lc;

	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);
		bool		ends = ps->ended && ps->path_id == 0;
		bool		parks = ps->waiting && !ps->ended && ps->path_id >= 0;

		if (ps->records == NIL && !ends && !parks)
			continue;
		w[n].execution_id = ps->execution_id;
		w[n].n = list_length(ps->records);
		w[n].main = ends ? ps : NULL;
		w[n].parked = parks;
		n++;
	}
	if (n == 0)
		return 0;
	parked_ids = palloc(sizeof(pg_uuid_t) * n);
	qsort(w, n, sizeof(ExecutionWrite), execution_write_cmp);
	col_init(&e, UUIDOID, n);
	col_init(&count, INT4OID, n);
	col_init(&status, TEXTOID, n);
	col_init(&output, JSONBOID, n);
	col_init(&error, JSONBOID, n);
	for (int i = 0; i < n; i++)
	{
		int32		sum = w[i].n;
		AllmaPathState *main = w[i].main;
		bool		parked = w[i].parked;

		while (i + 1 < n && execution_write_cmp(&w[i], &w[i + 1]) == 0)
		{
			i++;
			sum += w[i].n;
			if (w[i].main != NULL)
				main = w[i].main;
			parked = parked || w[i].parked;
		}
		if (parked)
			parked_ids[nparked++] = w[i].execution_id;
		col_add(&e, UUIDPGetDatum(&w[i].execution_id), false);
		col_add(&count, Int32GetDatum(sum), false);
		col_add_text(&status, main == NULL ? NULL : main->failed ? "FAILED" : "COMPLETED");
		col_add_jsonb(&output, main == NULL ? NULL : main->context);
		col_add_jsonb(&error, main != NULL && main->failed ? main->error : NULL);
	}

	if (save_executions_plan == NULL)
	{
		Oid			types[5] = {UUIDARRAYOID, INT4ARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
		JSONBARRAYOID};

		/*
		 * u.status is NULL where the batch only adds step attempts.  "Not
		 * finished yet" is "none of the final statuses", not status =
		 * 'RUNNING' (see the partial index of running executions).  Only
		 * the main path's worker sets COMPLETED or FAILED, so a returned
		 * status equal to the one written says this statement ended it.
		 */
#define ALLMA_ENDS_HERE "u.status IS NOT NULL AND x.status <> ALL ('{COMPLETED,FAILED,TIMED_OUT,CANCELLED}')"
		save_executions_plan = prepare_keyed(
									   "UPDATE allma.executions x "
									   "SET step_count = x.step_count + u.n, "
									   "    status = CASE WHEN " ALLMA_ENDS_HERE " THEN u.status ELSE x.status END, "
									   "    output = CASE WHEN " ALLMA_ENDS_HERE " THEN u.output ELSE x.output END, "
									   "    error = CASE WHEN " ALLMA_ENDS_HERE " THEN u.error ELSE x.error END, "
									   "    ended_at = CASE WHEN " ALLMA_ENDS_HERE " THEN clock_timestamp() ELSE x.ended_at END "
									   "FROM unnest($1, $2, $3, $4, $5) AS u(e, n, status, output, error) "
									   "WHERE x.execution_id = u.e AND x.execution_id = ANY ($1) "
									   "RETURNING x.execution_id::text, x.flow_id, x.status, "
									   "          u.status IS NOT NULL AND x.status = u.status, "
									   "          x.concurrency_key, x.execution_id", 5, types);
#undef ALLMA_ENDS_HERE
	}
	args[0] = col_array(&e);
	args[1] = col_array(&count);
	args[2] = col_array(&status);
	args[3] = col_array(&output);
	args[4] = col_array(&error);
	execute_plan(save_executions_plan, args, SPI_OK_UPDATE_RETURNING);

	/*
	 * NOTIFY allma_execution_events, delivered when the batch commits (only
	 * while some session listens, see listeners.c).  Every
	 * listener gets it, whatever row-level security lets it see, and any
	 * role can send one on this channel: the payload is only the execution
	 * id (a wake-up), and listeners read the status through RLS.
	 */
	{
		uint64		nrows = SPI_processed;
		SPITupleTable *tuptable = SPI_tuptable;
		List	   *finished = NIL;
		int			nkeyed = 0;
		pg_uuid_t  *keyed_ids = palloc(sizeof(pg_uuid_t) * Max(nrows, 1));
		char	  **keys = palloc(sizeof(char *) * Max(nrows, 1));
		bool	   *held = palloc(sizeof(bool) * Max(nrows, 1));
		pg_uuid_t  *dead = palloc(sizeof(pg_uuid_t) * Max(nparked, 1));
		char	  **dead_status = palloc(sizeof(char *) * Max(nparked, 1));
		int			ndead = 0;

		for (uint64 i = 0; i < nrows; i++)
		{
			HeapTuple	tup = tuptable->vals[i];
			bool		isnull;
			char	   *id;
			char	   *key;

			/* parked paths of an execution another transaction ended */
			if (nparked > 0)
			{
				char	   *st = SPI_getvalue(tup, tuptable->tupdesc, 3);
				pg_uuid_t  *xid = DatumGetUUIDP(SPI_getbinval(tup, tuptable->tupdesc, 6, &isnull));

				if (strcmp(st, "CANCELLED") == 0 || strcmp(st, "TIMED_OUT") == 0)
				{
					for (int k = 0; k < nparked; k++)
					{
						if (memcmp(&parked_ids[k], xid, sizeof(pg_uuid_t)) == 0)
						{
							memcpy(&dead[ndead], xid, sizeof(pg_uuid_t));
							dead_status[ndead++] = st;
							break;
						}
					}
				}
			}
			/* only the executions this statement ended */
			if (!DatumGetBool(SPI_getbinval(tup, tuptable->tupdesc, 4, &isnull)) || isnull)
				continue;
			id = SPI_getvalue(tup, tuptable->tupdesc, 1);
			allma_event_notify(id);
			finished = lappend(finished, id);
			key = SPI_getvalue(tup, tuptable->tupdesc, 5);
			if (key != NULL)
			{
				memcpy(&keyed_ids[nkeyed],
					   DatumGetUUIDP(SPI_getbinval(tup, tuptable->tupdesc, 6, &isnull)),
					   sizeof(pg_uuid_t));
				keys[nkeyed] = key;
				held[nkeyed++] = true;
			}
		}
		/* their concurrency slots: the next queued executions start */
		allma_concurrency_release(nkeyed, keyed_ids, keys, held);
		/* their onCompletionActions, in the same transaction */
		if (finished != NIL)
			allma_completion_plan(paths, finished);
		/* dropped, not parked: the paths, their waits, sub-flows started */
		allma_lifecycle_drop_parked(ndead, dead, dead_status);
		return list_length(finished);
	}
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
				ended,
				context;
	ListCell   *lc;
	int			n = 0;
	Datum		args[16];

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
	col_init(&context, JSONBOID, n);

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
			col_add_jsonb(&context, rec->context);
		}
	}

	if (insert_history_plan == NULL)
	{
		Oid			types[16] = {UUIDARRAYOID, INT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID,
			TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
			JSONBARRAYOID, JSONBARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
		TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, JSONBARRAYOID};

		insert_history_plan = prepare(
									  "INSERT INTO allma.step_executions "
									  "  (execution_id, path_id, seq, branch_id, step_instance_id, step_type, "
									  "   attempt, status, input, output, error, next_step_instance_id, "
									  "   details, started_at, ended_at, context) "
									  "SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
									  "                     $11, $12, $13, $14, $15, $16)", 16, types);
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
	args[15] = col_array(&context);
	execute_plan(insert_history_plan, args, SPI_OK_INSERT);
}

/*
 * allma_store_save writes the batch back.  Returns the number of
 * executions that became terminal.  SPI must be connected.
 */
int
allma_store_save(List *paths)
{
	bool		woke;

	allma_store_save_paths(paths);
	return allma_store_save_counts(paths, &woke);
}

/*
 * allma_store_save_paths writes the batch's history, forks and paths: the
 * first half of allma_store_save.  SPI must be connected.
 */
void
allma_store_save_paths(List *paths)
{
	if (paths == NIL)
		return;
	save_history(paths);
	allma_store_save_joined_forks(paths);
	allma_store_save_new_forks(paths);
	save_paths(paths);
}

/*
 * allma_store_save_counts counts finished branches into their forks and
 * writes the executions: the second half of allma_store_save, the one that
 * takes row locks other workers wait for (a fork's row, an execution's row,
 * held until commit), so a pass runs what it may between the halves.
 * *woke says whether it made paths due now (a joining parent, released
 * branches).  Returns the number of executions that became terminal.
 */
int
allma_store_save_counts(List *paths, bool *woke)
{
	*woke = false;
	if (paths == NIL)
		return 0;
	*woke = allma_store_save_branches(paths);
	return save_executions(paths);
}

/*
 * next_due_query runs one saved next-due statement (a single timestamptz
 * or NULL) and returns it, 0 for NULL
 */
static TimestampTz
next_due_query(SPIPlanPtr plan)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			rc = execute_keyed(plan, NULL, NULL, true, 1);
	bool		isnull;
	Datum		d;

	MemoryContextSwitchTo(cxt);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		return 0;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(d);
}

/*
 * allma_store_next_due: when the earliest READY path becomes due, a wait
 * times out or (with deadlines) an execution's deadline passes; 0 when
 * none.  The deadline is read only when "deadlines" is true (the worker's
 * deadline checks, every TIMEOUT_CHECK_MS); otherwise the one read last is
 * used: its query reads the running executions (the planner prefers the
 * partial index of running executions, which holds all of them, to the
 * one of deadlines whenever statistics make both look small).
 */
TimestampTz
allma_store_next_due(bool deadlines)
{
	static TimestampTz last_deadline = 0;
	TimestampTz due;

	if (next_due_plan == NULL)
		next_due_plan = prepare("SELECT least((SELECT min(due_at) FROM allma.execution_paths "
								"                WHERE status = 'READY'), "
								"             (SELECT min(due_at) FROM allma.execution_paths "
								"                WHERE status = 'WAITING' AND request ? 'wait'))",
								0, NULL);
	if (next_deadline_plan == NULL)
		next_deadline_plan = prepare("SELECT min(deadline) FROM allma.executions "
									 "WHERE status = 'RUNNING' AND deadline IS NOT NULL",
									 0, NULL);
	due = next_due_query(next_due_plan);
	if (deadlines)
		last_deadline = next_due_query(next_deadline_plan);
	if (last_deadline != 0 && (due == 0 || last_deadline < due))
		due = last_deadline;
	return due;
}
