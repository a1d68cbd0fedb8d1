/*-------------------------------------------------------------------------
 *
 * store_forks.c
 *	  A worker batch's fork writes: new fork rows and their branch paths
 *	  (inserted in chunks while the fork is planned), finished branches
 *	  counted into their fork and the parent woken for the join, queued
 *	  branches released under maxConcurrency, and a joined fork's branch
 *	  rows deleted in chunks.  Split from store.c, which calls these from
 *	  allma_store_save.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/async.h"
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
#include "store.h"
#include "store_internal.h"
#include "steps/completion.h"


#define prepare(sql, nargs, types) allma_store_prepare(sql, nargs, types)
#define prepare_keyed(sql, nargs, types) allma_store_keyed_prepare(sql, nargs, types)

/*
 * the branches of a joined fork are deleted this many at a time (the
 * chunk's row addresses are one array in the worker: 10,000 of them, ~0.5 MB
 * while it is built)
 */
#define DELETE_BRANCHES_CHUNK 10000

static SPIPlanPtr insert_forks_plan = NULL;
static SPIPlanPtr insert_branches_plan = NULL;
static SPIPlanPtr finish_branches_plan = NULL;
static SPIPlanPtr lock_forks_plan = NULL;
static SPIPlanPtr count_forks_plan = NULL;
static SPIPlanPtr wake_parents_plan = NULL;
static SPIPlanPtr release_branches_plan = NULL;
static SPIPlanPtr delete_forks_plan = NULL;

void
allma_store_forks_reset(void)
{
	SPIPlanPtr *plans[] = {&insert_forks_plan, &insert_branches_plan, &finish_branches_plan,
		&lock_forks_plan, &count_forks_plan, &wake_parents_plan, &release_branches_plan,
	&delete_forks_plan};

	for (int i = 0; i < lengthof(plans); i++)
	{
		if (*plans[i] != NULL)
			SPI_freeplan(*plans[i]);
		*plans[i] = NULL;
	}
}

/*
 * allma_store_insert_branches inserts the pending chunk of a fork's branch
 * paths (the engine calls it while it plans the fork, so that a wide fork
 * never holds all its branches in memory).  Branches beyond maxConcurrency
 * start WAITING.  SPI must be connected.
 */
void
allma_store_insert_branches(pg_uuid_t *execution_id, int64 parent_path_id,
							AllmaForkSpec *f)
{
	int			n = f->nbranches;
	int64		first_index = f->ntotal - n;
	Column		be,
				bparent,
				bid,
				bord,
				bitem,
				bstatus,
				bstep,
				bctx,
				bdelay;
	Datum		args[9];

	if (n == 0)
		return;
	col_init(&be, UUIDOID, n);
	col_init(&bparent, INT8OID, n);
	col_init(&bid, TEXTOID, n);
	col_init(&bord, INT4OID, n);
	col_init(&bitem, INT4OID, n);
	col_init(&bstatus, TEXTOID, n);
	col_init(&bstep, TEXTOID, n);
	col_init(&bctx, JSONBOID, n);
	col_init(&bdelay, INT8OID, n);
	for (int i = 0; i < n; i++)
	{
		AllmaBranchSpec *b = &f->branches[i];
		bool		queued = f->max_concurrency > 0 && first_index + i >= f->max_concurrency;

		col_add(&be, UUIDPGetDatum(execution_id), false);
		col_add(&bparent, Int64GetDatum(parent_path_id), false);
		col_add_text(&bid, b->branch_id);
		col_add(&bord, Int32GetDatum(b->ordinal), false);
		col_add(&bitem, Int32GetDatum(b->item_index), false);
		col_add_text(&bstatus, queued ? "WAITING" : "READY");
		col_add_text(&bstep, b->step_id);
		col_add_jsonb(&bctx, b->overlay);
		col_add(&bdelay, Int64GetDatum(b->delay_ms), false);
	}

	if (insert_branches_plan == NULL)
	{
		Oid			types[9] = {UUIDARRAYOID, INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
		INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, JSONBARRAYOID, INT8ARRAYOID};

		/*
		 * A queued (WAITING) branch keeps its first step's delay as an
		 * offset from the epoch in due_at; release_branches_plan turns it
		 * into a due time when the branch is let go.  Branches inherit
		 * their forking path's priority (one lookup per chunk: all the
		 * chunk's branches have the same parent).
		 */
		insert_branches_plan = prepare(
									   "INSERT INTO allma.execution_paths (execution_id, path_id, parent_path_id, "
									   "  branch_id, branch_ordinal, item_index, status, step_instance_id, context, "
									   "  due_at, priority) "
									   "SELECT e, nextval('allma.path_id_seq'), parent, bid, ord, item, st, step, ctx, "
									   "  CASE WHEN st = 'READY' THEN clock_timestamp() ELSE to_timestamp(0) END "
									   "  + make_interval(secs => d / 1000.0), pr.priority "
									   "FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9) "
									   "     AS u(e, parent, bid, ord, item, st, step, ctx, d) "
									   "CROSS JOIN (SELECT coalesce((SELECT x.priority FROM allma.execution_paths x "
									   "  WHERE x.execution_id = $1[1] AND x.path_id = $2[1]), 0) AS priority) pr",
									   9, types);
	}
	args[0] = col_array(&be);
	args[1] = col_array(&bparent);
	args[2] = col_array(&bid);
	args[3] = col_array(&bord);
	args[4] = col_array(&bitem);
	args[5] = col_array(&bstatus);
	args[6] = col_array(&bstep);
	args[7] = col_array(&bctx);
	args[8] = col_array(&bdelay);
	execute_plan(insert_branches_plan, args, SPI_OK_INSERT);
}

/* save_new_forks inserts the row of every fork started in this batch */
void
allma_store_save_new_forks(List *paths)
{
	ListCell   *lc;
	int			nforks = 0;
	Column		fe,
				fp,
				fstep,
				fbase,
				ftotal,
				fmax;
	Datum		args[6];

	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);

		if (ps->waiting && ps->fork != NULL)
			nforks++;
	}
	if (nforks == 0)
		return;

	col_init(&fe, UUIDOID, nforks);
	col_init(&fp, INT8OID, nforks);
	col_init(&fstep, TEXTOID, nforks);
	col_init(&fbase, JSONBOID, nforks);
	col_init(&ftotal, INT4OID, nforks);
	col_init(&fmax, INT4OID, nforks);

	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);
		AllmaForkSpec *f = ps->fork;

		if (!ps->waiting || f == NULL)
			continue;
		col_add(&fe, UUIDPGetDatum(&ps->execution_id), false);
		col_add(&fp, Int64GetDatum(ps->path_id), false);
		col_add_text(&fstep, f->step_id);
		col_add_jsonb(&fbase, f->base);
		col_add(&ftotal, Int32GetDatum((int32) f->ntotal), false);
		col_add(&fmax, Int32GetDatum(f->max_concurrency), false);
	}

	if (insert_forks_plan == NULL)
	{
		Oid			types[6] = {UUIDARRAYOID, INT8ARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
		INT4ARRAYOID, INT4ARRAYOID};

		insert_forks_plan = prepare(
									"INSERT INTO allma.forks (execution_id, fork_path_id, step_instance_id, "
									"  base_context, total, pending, max_concurrency) "
									"SELECT e, p, step, base, total, total, maxc "
									"FROM unnest($1, $2, $3, $4, $5, $6) AS u(e, p, step, base, total, maxc)",
									6, types);
	}
	args[0] = col_array(&fe);
	args[1] = col_array(&fp);
	args[2] = col_array(&fstep);
	args[3] = col_array(&fbase);
	args[4] = col_array(&ftotal);
	args[5] = col_array(&fmax);
	execute_plan(insert_forks_plan, args, SPI_OK_INSERT);
}

typedef struct ForkTally
{
	pg_uuid_t	execution_id;
	int64		fork_path_id;
	int			ok;
	int			bad;
} ForkTally;

/*
 * save_branches records finished branches, counts them against their
 * forks, releases queued branches (maxConcurrency) and makes a parent whose
 * last branch just finished runnable again, to join.  The fork rows are
 * locked in a fixed order first, so that concurrent workers neither
 * deadlock nor both see the count reach zero: exactly one transaction
 * triggers each join.  Returns whether it made paths due now (a parent to
 * join, released branches).
 */
bool
allma_store_save_branches(List *paths)
{
	ListCell   *lc;
	List	   *tallies = NIL;
	int			nended = 0;
	Column		e,
				p,
				status,
				result,
				error;
	Column		te,
				tp,
				tok,
				tbad;
	Datum		args[5];
	Column		we,
				wp;
	bool		woke = false;

	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);

		if (ps->ended && ps->is_branch)
			nended++;
	}
	if (nended == 0)
		return false;

	col_init(&e, UUIDOID, nended);
	col_init(&p, INT8OID, nended);
	col_init(&status, TEXTOID, nended);
	col_init(&result, JSONBOID, nended);
	col_init(&error, JSONBOID, nended);

	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);
		ForkTally  *t = NULL;
		ListCell   *lc2;

		if (!ps->ended || !ps->is_branch)
			continue;
		col_add(&e, UUIDPGetDatum(&ps->execution_id), false);
		col_add(&p, Int64GetDatum(ps->path_id), false);
		col_add_text(&status, ps->failed ? "FAILED" : "DONE");
		col_add_jsonb(&result, ps->failed ? NULL : (ps->result ? ps->result : allma_jsonb_null()));
		col_add_jsonb(&error, ps->failed ? ps->error : NULL);

		foreach(lc2, tallies)
		{
			ForkTally  *x = lfirst(lc2);

			if (x->fork_path_id == ps->parent_path_id &&
				memcmp(&x->execution_id, &ps->execution_id, sizeof(pg_uuid_t)) == 0)
				t = x;
		}
		if (t == NULL)
		{
			t = palloc0(sizeof(ForkTally));
			t->execution_id = ps->execution_id;
			t->fork_path_id = ps->parent_path_id;
			tallies = lappend(tallies, t);
		}
		if (ps->failed)
			t->bad++;
		else
			t->ok++;
	}

	if (finish_branches_plan == NULL)
	{
		Oid			types[5] = {UUIDARRAYOID, INT8ARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
		JSONBARRAYOID};

		finish_branches_plan = prepare_keyed(
									   "UPDATE allma.execution_paths p "
									   "SET status = u.status, result = u.result, error = u.error, "
									   "    step_instance_id = NULL, context = '{}' "
									   "FROM unnest($1, $2, $3, $4, $5) AS u(e, p, status, result, error) "
									   "WHERE p.execution_id = u.e AND p.path_id = u.p "
									   "  AND p.execution_id = ANY ($1) AND p.path_id = ANY ($2)", 5, types);
	}
	args[0] = col_array(&e);
	args[1] = col_array(&p);
	args[2] = col_array(&status);
	args[3] = col_array(&result);
	args[4] = col_array(&error);
	execute_plan(finish_branches_plan, args, SPI_OK_UPDATE);

	col_init(&te, UUIDOID, list_length(tallies));
	col_init(&tp, INT8OID, list_length(tallies));
	col_init(&tok, INT4OID, list_length(tallies));
	col_init(&tbad, INT4OID, list_length(tallies));
	foreach(lc, tallies)
	{
		ForkTally  *t = lfirst(lc);

		col_add(&te, UUIDPGetDatum(&t->execution_id), false);
		col_add(&tp, Int64GetDatum(t->fork_path_id), false);
		col_add(&tok, Int32GetDatum(t->ok), false);
		col_add(&tbad, Int32GetDatum(t->bad), false);
	}
	args[0] = col_array(&te);
	args[1] = col_array(&tp);
	args[2] = col_array(&tok);
	args[3] = col_array(&tbad);

	if (lock_forks_plan == NULL)
	{
		Oid			types[2] = {UUIDARRAYOID, INT8ARRAYOID};

		lock_forks_plan = prepare_keyed(
								  "SELECT 1 FROM allma.forks f, unnest($1, $2) AS u(e, p) "
								  "WHERE f.execution_id = u.e AND f.fork_path_id = u.p "
								  "  AND f.execution_id = ANY ($1) AND f.fork_path_id = ANY ($2) "
								  "ORDER BY f.execution_id, f.fork_path_id FOR UPDATE OF f", 2, types);
	}
	execute_plan(lock_forks_plan, args, SPI_OK_SELECT);

	if (count_forks_plan == NULL)
	{
		Oid			types[4] = {UUIDARRAYOID, INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID};

		count_forks_plan = prepare_keyed(
								   "UPDATE allma.forks f "
								   "SET pending = f.pending - u.ok - u.bad, completed = f.completed + u.ok, "
								   "    failed = f.failed + u.bad "
								   "FROM unnest($1, $2, $3, $4) AS u(e, p, ok, bad) "
								   "WHERE f.execution_id = u.e AND f.fork_path_id = u.p "
								   "  AND f.execution_id = ANY ($1) AND f.fork_path_id = ANY ($2) "
								   "RETURNING f.execution_id, f.fork_path_id, f.pending, f.max_concurrency, "
								   "          u.ok + u.bad", 4, types);
	}
	execute_plan(count_forks_plan, args, SPI_OK_UPDATE_RETURNING);

	{
		SPITupleTable *tuptable = SPI_tuptable;
		uint64		nrows = SPI_processed;

		col_init(&we, UUIDOID, (int) nrows);
		col_init(&wp, INT8OID, (int) nrows);
		for (uint64 i = 0; i < nrows; i++)
		{
			HeapTuple	tup = tuptable->vals[i];
			TupleDesc	desc = tuptable->tupdesc;
			bool		isnull;
			Datum		exec = SPI_getbinval(tup, desc, 1, &isnull);
			int64		fork = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
			int32		pending = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
			int32		maxc = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
			int32		finished = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));

			if (pending <= 0)
			{
				pg_uuid_t  *copy = palloc(sizeof(pg_uuid_t));

				memcpy(copy, DatumGetUUIDP(exec), sizeof(pg_uuid_t));
				col_add(&we, UUIDPGetDatum(copy), false);
				col_add(&wp, Int64GetDatum(fork), false);
			}
			else if (maxc > 0)
			{
				Datum		rargs[3];

				/*
				 * Queued branches are the WAITING ones that never ran (no
				 * request record); a branch parked by its step (a sync
				 * sub-flow) waits for something else.
				 */
				if (release_branches_plan == NULL)
				{
					Oid			types[3] = {UUIDOID, INT8OID, INT4OID};

					release_branches_plan = prepare(
													"UPDATE allma.execution_paths SET status = 'READY', "
													"  due_at = clock_timestamp() + (due_at - to_timestamp(0)) "
													"WHERE (execution_id, path_id) IN ("
													"  SELECT execution_id, path_id FROM allma.execution_paths "
													"  WHERE execution_id = $1 AND parent_path_id = $2 AND status = 'WAITING' "
													"    AND request IS NULL "
													"  ORDER BY path_id LIMIT $3 FOR UPDATE SKIP LOCKED)", 3, types);
				}
				rargs[0] = exec;
				rargs[1] = Int64GetDatum(fork);
				rargs[2] = Int32GetDatum(finished);
				execute_plan(release_branches_plan, rargs, SPI_OK_UPDATE);
				if (SPI_processed > 0)
					woke = true;
			}
		}
	}

	if (we.n > 0)
	{
		if (wake_parents_plan == NULL)
		{
			Oid			types[2] = {UUIDARRAYOID, INT8ARRAYOID};

			wake_parents_plan = prepare_keyed(
										"UPDATE allma.execution_paths p "
										"SET status = 'READY', joining = true, due_at = clock_timestamp() "
										"FROM unnest($1, $2) AS u(e, p) "
										"WHERE p.execution_id = u.e AND p.path_id = u.p "
										"  AND p.execution_id = ANY ($1) AND p.path_id = ANY ($2)", 2, types);
		}
		args[0] = col_array(&we);
		args[1] = col_array(&wp);
		execute_plan(wake_parents_plan, args, SPI_OK_UPDATE);
		woke = true;
	}
	return woke;
}

/*
 * save_joined_forks deletes the branches and fork row of every joined fork,
 * the branches DELETE_BRANCHES_CHUNK at a time.  Only finished branches go: the same path may already have started its
 * next fork in this pass, whose branches are READY or WAITING.
 */
void
allma_store_save_joined_forks(List *paths)
{
	ListCell   *lc;
	Column		e,
				p;
	Datum		args[2];

	col_init(&e, UUIDOID, list_length(paths));
	col_init(&p, INT8OID, list_length(paths));
	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);

		if (!ps->joined)
			continue;
		col_add(&e, UUIDPGetDatum(&ps->execution_id), false);
		col_add(&p, Int64GetDatum(ps->path_id), false);
	}
	if (e.n == 0)
		return;
	if (delete_forks_plan == NULL)
	{
		Oid			types[2] = {UUIDARRAYOID, INT8ARRAYOID};

		delete_forks_plan = prepare_keyed(
									"DELETE FROM allma.forks f USING unnest($1, $2) AS u(e, p) "
									"WHERE f.execution_id = u.e AND f.fork_path_id = u.p "
									"  AND f.execution_id = ANY ($1) AND f.fork_path_id = ANY ($2)", 2, types);
	}
	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);
		Datum		bargs[3];
		int64		deleted;

		if (!ps->joined)
			continue;
		bargs[0] = UUIDPGetDatum(&ps->execution_id);
		bargs[1] = Int64GetDatum(ps->path_id);
		bargs[2] = Int64GetDatum(-1);
		do
		{
			static const char *const off[] = {"enable_seqscan", "enable_bitmapscan", "enable_sort", "jit"};
			bool		isnull;
			Oid			btypes[3] = {UUIDOID, INT8OID, INT8OID};
			int			nestlevel;
			int			rc;

			/*
			 * The branches of one fork in chunks, in path order from where
			 * the last chunk ended (a million-branch fork: 100 statements,
			 * none rescanning the rows deleted before it).  Planned for its
			 * values each time (a generic plan, a cached plan after five
			 * runs, joined every chunk against all the execution's rows),
			 * and with sorts, sequential and bitmap scans disabled: the
			 * primary key's ordered scan is then the only plan, whatever
			 * the statistics say (the branch index, sorted, would read all
			 * the remaining branches for each chunk).  The chunk's row
			 * addresses are one array: no tuple store of deleted rows.
			 */
			nestlevel = NewGUCNestLevel();
			for (int i = 0; i < lengthof(off); i++)
				(void) set_config_option(off[i], "off", PGC_USERSET, PGC_S_SESSION,
										 GUC_ACTION_SAVE, true, 0, false);
			rc = SPI_execute_with_args("WITH s AS (SELECT array_agg(y.ctid) AS t, count(*) AS n, "
									   "  coalesce(max(y.path_id), 0) AS last FROM ("
									   "   SELECT ctid, path_id FROM allma.execution_paths "
									   "    WHERE execution_id = $1 AND path_id > $3 AND parent_path_id = $2 "
									   "      AND status IN ('DONE', 'FAILED') "
									   "    ORDER BY path_id LIMIT " CppAsString2(DELETE_BRANCHES_CHUNK) ") y), "
									   "d AS (DELETE FROM allma.execution_paths x "
									   "  WHERE x.ctid = ANY ((SELECT t FROM s)::tid[])) "
									   "SELECT n, last FROM s",
									   3, btypes, bargs, NULL, false, 0);
			AtEOXact_GUC(true, nestlevel);
			if (rc != SPI_OK_SELECT)
				elog(ERROR, "allma: deleting the branches of a joined fork failed");
			deleted = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			bargs[2] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		} while (deleted == DELETE_BRANCHES_CHUNK);
	}
	args[0] = col_array(&e);
	args[1] = col_array(&p);
	execute_plan(delete_forks_plan, args, SPI_OK_DELETE);
}

