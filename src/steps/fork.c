/*-------------------------------------------------------------------------
 *
 * fork.c
 *	  The PARALLEL_FORK_MANAGER step: starting a fork, joining it, and what
 *	  a finished branch contributes.
 *
 * Starting: every item at itemsPath times every branch template whose
 * condition holds becomes an AllmaBranchSpec; store.c inserts them as
 * paths of this execution and the parent path waits.  Joining: when the
 * last branch finishes, the parent is claimed again with joining set and
 * allma_fork_join builds the step's output from the branch rows with SQL,
 * so the worker never holds every branch result at once.
 *
 * IDENTIFICATION
 *	  src/steps/fork.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

#include "condition.h"
#include "defcheck.h"
#include "faultpoint.h"
#include "jsonb_util.h"
#include "large_value.h"
#include "owner.h"
#include "path.h"
#include "steps.h"
#include "store.h"
#include "template.h"
#include "spicache.h"

static Jsonb *
aggregation_config(AllmaStep *step)
{
	Jsonb	   *agg = allma_jsonb_get(step->def, "aggregationConfig");

	return allma_jsonb_is_object(agg) ? agg : allma_jsonb_empty_object();
}

static const char *
aggregation_strategy(Jsonb *agg)
{
	char	   *strategy = allma_jsonb_get_cstring(agg, "strategy");

	return strategy ? strategy : "COLLECT_ARRAY";
}

static Jsonb *
aggregated_output(Jsonb *data)
{
	return allma_jsonb_set_key(NULL, "aggregatedData", data);
}

static Jsonb *
empty_aggregate(Jsonb *agg)
{
	const char *strategy = aggregation_strategy(agg);

	if (strcmp(strategy, "MERGE_OBJECTS") == 0)
		return aggregated_output(allma_jsonb_empty_object());
	if (strcmp(strategy, "SUM") == 0)
		return aggregated_output(allma_jsonb_int(0));
	if (strcmp(strategy, "NONE") == 0)
	{
		Jsonb	   *out = aggregated_output(allma_jsonb_null());

		out = allma_jsonb_set_key(out, "aggregationSkipped", allma_jsonb_bool(true));
		out = allma_jsonb_set_key(out, "branchCount", allma_jsonb_int(0));
		return allma_jsonb_set_key(out, "failedBranchCount", allma_jsonb_int(0));
	}
	return aggregated_output(allma_jsonb_empty_array());
}

/* the branch's overlay: {currentItem} plus its inputMappings and literals */
static Jsonb *
branch_overlay(StepRun *run, Jsonb *branch, Jsonb *item, Jsonb *item_ctx)
{
	Jsonb	   *overlay = allma_jsonb_set_key(NULL, "currentItem", item);
	Jsonb	   *mappings = allma_jsonb_get(branch, "inputMappings");
	Jsonb	   *literals = allma_jsonb_get(branch, "literals");
	ListCell   *lc;

	if (allma_jsonb_is_object(mappings))
	{
		List	   *keys = allma_jsonb_object_keys(mappings);

		foreach(lc, keys)
		{
			char	   *key = lfirst(lc);
			char	   *path = allma_jsonb_get_cstring(mappings, key);
			Jsonb	   *v = path ? allma_path_get(item_ctx, path) : NULL;

			if (v != NULL)
				overlay = allma_dotpath_set(overlay, key, v);
		}
	}
	if (allma_jsonb_is_object(literals))
	{
		Jsonb	   *rendered = allma_template_render_value(literals, item_ctx);
		List	   *keys = allma_jsonb_object_keys(rendered);

		foreach(lc, keys)
		{
			char	   *key = lfirst(lc);

			overlay = allma_dotpath_set(overlay, key, allma_jsonb_get(rendered, key));
		}
	}
	return overlay;
}

/* branches are inserted in chunks of this many, so memory stays bounded */
#define FORK_CHUNK 5000

/* a COLLECT_ARRAY of more branches lands out of line (collect_out_of_line) */
#define FORK_INLINE_BRANCHES 1000

static void
add_branch(AllmaPathState *ps, AllmaForkSpec *spec, const char *branch_id, int ordinal,
		   int item_index, const char *step_id, Jsonb *overlay, int64 delay_ms)
{
	AllmaBranchSpec *b;
	MemoryContext oldcxt;

	if (spec->nbranches == spec->capacity)
	{
		allma_store_insert_branches(&ps->execution_id, ps->path_id, spec);
		MemoryContextReset(spec->chunkcxt);
		spec->nbranches = 0;
	}
	oldcxt = MemoryContextSwitchTo(spec->chunkcxt);
	b = &spec->branches[spec->nbranches++];
	spec->ntotal++;
	b->branch_id = pstrdup(branch_id);
	b->ordinal = ordinal;
	b->item_index = item_index;
	b->step_id = pstrdup(step_id);
	b->overlay = (Jsonb *) palloc(VARSIZE(overlay));
	memcpy(b->overlay, overlay, VARSIZE(overlay));
	b->delay_ms = delay_ms;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * allma_fork_start plans the branches of a fork.  Returns the step's output when
 * there is nothing to run (no item or no matching branch), else NULL with
 * run->forked set and the spec in run->ps->fork.
 */
/*
 * fork_item_count: the number of items at itemsPath; 0 for none.  A
 * non-array value is one item (Allma).
 */
static int
fork_item_count(Jsonb *items)
{
	JsonbValue	v;

	if (items == NULL || (allma_jsonb_scalar(items, &v) && v.type == jbvNull))
		return 0;
	if (allma_jsonb_is_array(items))
		return JB_ROOT_COUNT(items);
	return 1;
}

/*
 * allma_fork_start plans and inserts the branches of a fork, a chunk at a time,
 * walking the item array without copying it.  Returns the step's output
 * when there is nothing to run (no item or no matching branch), else NULL
 * with run->forked set and the fork in run->ps->fork (store.c inserts its
 * row when the pass ends).
 */
Jsonb *
allma_fork_start(StepRun *run)
{
	AllmaStep  *step = run->step;
	Jsonb	   *agg = aggregation_config(step);
	char	   *items_path = allma_jsonb_get_cstring(step->def, "itemsPath");
	Jsonb	   *items = items_path ? allma_path_get_keep_refs(run->ps->context, items_path) : NULL;
	int			nitems;
	pg_uuid_t	ref;
	bool		by_parts = false;
	int32		next_part = 0;
	int			part_left = 0;
	MemoryContext partcxt = NULL;
	List	   *templates = allma_jsonb_array_elements(allma_jsonb_get(step->def, "parallelBranches"));
	Jsonb	   *base = run->ps->context;
	double		max_concurrency = 0;
	AllmaForkSpec *spec;
	MemoryContext oldcxt;
	MemoryContext itemcxt;
	JsonbIterator *it = NULL;
	JsonbValue	v;
	JsonbIteratorToken tok;

	/*
	 * Items out of line: an array is read a part at a time (a million items
	 * never sit in the worker at once); any other value is one item.
	 */
	if (items != NULL && !JB_ROOT_IS_SCALAR(items) && allma_large_scope_active() &&
		allma_large_is_ref(&items->root, &ref))
	{
		int64		length;

		(void) allma_large_element(&ref, 0, &length);
		if (length >= 0)
		{
			by_parts = true;
			nitems = (int) Min(length, (int64) INT_MAX);
		}
		else
			items = allma_large_fetch(&ref);
	}
	if (!by_parts)
		nitems = fork_item_count(items);

	if ((int64) nitems * list_length(templates) > allma_max_fork_branches)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("fork step \"%s\" would start up to %lld branches, more than allma.max_fork_branches (%d)",
						step->id, (long long) nitems * list_length(templates),
						allma_max_fork_branches),
				 errhint("Split the work, or raise allma.max_fork_branches.")));

	/* the item list is not copied into the branches' shared context */
	if (items_path != NULL && strncmp(items_path, "$.", 2) == 0 &&
		strpbrk(items_path + 2, ".[*?'\" ") == NULL)
		base = allma_jsonb_delete_key(base, items_path + 2);

	(void) allma_jsonb_get_number(agg, "maxConcurrency", &max_concurrency);

	oldcxt = MemoryContextSwitchTo(run->pathcxt);
	spec = palloc0(sizeof(AllmaForkSpec));
	spec->step_id = pstrdup(step->id);
	spec->base = (Jsonb *) palloc(VARSIZE(base));
	memcpy(spec->base, base, VARSIZE(base));
	spec->max_concurrency = (int32) Max(max_concurrency, 0);
	spec->capacity = FORK_CHUNK;
	spec->branches = palloc(sizeof(AllmaBranchSpec) * spec->capacity);
	spec->chunkcxt = AllocSetContextCreate(run->pathcxt, "allma fork chunk",
										   ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(oldcxt);

	itemcxt = AllocSetContextCreate(CurrentMemoryContext, "allma fork item",
									ALLOCSET_DEFAULT_SIZES);
	if (by_parts)
		partcxt = AllocSetContextCreate(CurrentMemoryContext, "allma fork items part",
										ALLOCSET_DEFAULT_SIZES);
	else if (nitems > 0 && allma_jsonb_is_array(items))
		it = JsonbIteratorInit(&items->root);

	for (int item_index = 0; item_index < nitems; item_index++)
	{
		Jsonb	   *item;
		Jsonb	   *item_ctx;
		ListCell   *lc2;
		int			ordinal = 0;

		if (by_parts && it == NULL)
		{
			/* the next part of the items, and an iterator over it */
			Jsonb	   *part;

			MemoryContextReset(partcxt);
			oldcxt = MemoryContextSwitchTo(partcxt);
			part = allma_large_part(&ref, next_part++, NULL);
			if (part == NULL || !allma_jsonb_is_array(part) || JB_ROOT_COUNT(part) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("fork step \"%s\": the out-of-line items end before item %d of %d",
								step->id, item_index, nitems)));
			part_left = JB_ROOT_COUNT(part);
			it = JsonbIteratorInit(&part->root);
			(void) JsonbIteratorNext(&it, &v, true);	/* WJB_BEGIN_ARRAY */
			MemoryContextSwitchTo(oldcxt);
		}
		oldcxt = MemoryContextSwitchTo(itemcxt);
		if (it == NULL)
			item = items;
		else if (by_parts)
		{
			tok = JsonbIteratorNext(&it, &v, true);
			Assert(tok == WJB_ELEM);
			item = JsonbValueToJsonb(&v);
			/* the part's last element: the next item starts the next part */
			if (--part_left == 0)
				it = NULL;
		}
		else
		{
			/* next element of the array (containers come back whole) */
			while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_ELEM)
				Assert(tok != WJB_DONE);
			item = JsonbValueToJsonb(&v);
		}
		item_ctx = allma_jsonb_set_key(base, "currentItem", item);
		foreach(lc2, templates)
		{
			Jsonb	   *branch = lfirst(lc2);
			char	   *cond = allma_jsonb_get_cstring(branch, "condition");
			char	   *branch_id = allma_jsonb_get_cstring(branch, "branchId");
			char	   *first = allma_jsonb_get_cstring(branch, "stepInstanceId");

			if (first != NULL && (cond == NULL || allma_condition_eval(cond, item_ctx)))
				add_branch(run->ps, spec, branch_id ? branch_id : first, ordinal, item_index,
						   first, branch_overlay(run, branch, item, item_ctx),
						   allma_step_delay_ms(allma_flow_step(run->ps->flow, first), true));
			ordinal++;
		}
		MemoryContextSwitchTo(oldcxt);
		/* the iterator's state lives in the caller's context, not itemcxt */
		MemoryContextReset(itemcxt);
	}
	MemoryContextDelete(itemcxt);
	if (partcxt != NULL)
		MemoryContextDelete(partcxt);

	if (spec->ntotal == 0)
		return empty_aggregate(agg);

	/* the last chunk */
	ALLMA_FAULT_POINT("mid-fan-out");
	if (spec->nbranches > 0)
		allma_store_insert_branches(&run->ps->execution_id, run->ps->path_id, spec);
	MemoryContextDelete(spec->chunkcxt);
	spec->chunkcxt = NULL;
	spec->nbranches = 0;
	spec->branches = NULL;

	run->forked = true;
	run->ps->fork = spec;
	return NULL;
}

static Jsonb *
spi_jsonb(const char *sql, AllmaPathState *ps, Jsonb *arg3)
{
	Oid			types[3] = {UUIDOID, INT8OID, JSONBOID};
	Datum		values[3];
	bool		isnull;
	Datum		d;
	Jsonb	   *result = NULL;
	MemoryContext outer = CurrentMemoryContext;

	values[0] = UUIDPGetDatum(&ps->execution_id);
	values[1] = Int64GetDatum(ps->path_id);
	values[2] = arg3 ? JsonbPGetDatum(arg3) : (Datum) 0;
	/*
	 * Not read-only: that takes a fresh snapshot.  The parent path may have
	 * been claimed through FOR UPDATE after its wake-up committed later than
	 * this pass's first snapshot, which would not show the last branches.
	 */
	SPI_connect();
	if (allma_spi_execute(sql, arg3 ? 3 : 2, types, values, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "allma: fork aggregation query failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
	{
		MemoryContext spicxt = MemoryContextSwitchTo(outer);

		result = DatumGetJsonbPCopy(d);
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();
	return result;
}

#define BRANCHES_OF_FORK \
	" FROM allma.execution_paths WHERE execution_id = $1 AND parent_path_id = $2"

/*
 * aggregate_back_in_line: an aggregate written out of line that turned out
 * no bigger than allma.out_of_line_threshold goes back into the context:
 * read it, delete its parts (args[2], args[3]: the root and value ids)
 */
static Jsonb *
aggregate_back_in_line(Oid *types, Datum *args, pg_uuid_t *id)
{
	Jsonb	   *data = allma_large_fetch(id);
	AllmaAsOwner st;

	allma_owner_begin(&st);
	allma_owner_exec("DELETE FROM allma.large_values WHERE root_execution_id = $3 AND value_id = $4 "
					 "AND $1 IS NOT NULL AND $2 IS NOT NULL",
					 4, types, args, NULL, SPI_OK_DELETE);
	allma_owner_end(&st);
	return data;
}

/*
 * collect_sorted_out_of_line builds a COLLECT_ARRAY aggregate straight
 * into allma.large_values, in parts of ALLMA_LARGE_PART_ELEMENTS branch
 * results, and returns its pointer: the fallback of collect_out_of_line for
 * branches whose path order is not their item order (none that allma
 * makes).  The aggregate is built by one INSERT ... SELECT:
 * the ordered aggregate cannot be hashed, so the parts are aggregated one
 * group at a time (each group's state is reset before the next), and the
 * sorts spill to disk past work_mem; the worker never holds more than one
 * part, whatever the fork's width.  An aggregate that turns out no larger
 * than allma.out_of_line_threshold is read back and kept in line.
 */
static Jsonb *
collect_sorted_out_of_line(AllmaPathState *ps)
{
	Oid			types[4] = {UUIDOID, INT8OID, UUIDOID, UUIDOID};
	Datum		args[4];
	pg_uuid_t	id;
	AllmaAsOwner st;
	bool		isnull;
	int64		bytes;
	int64		count;
	char	   *sql;

	if (!pg_strong_random(id.data, UUID_LEN))
		elog(ERROR, "allma: could not generate a value id");
	id.data[6] = (id.data[6] & 0x0f) | 0x40;	/* version 4 */
	id.data[8] = (id.data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */

	sql = psprintf("WITH b AS (SELECT row_number() OVER (ORDER BY item_index, branch_ordinal) - 1 AS n, "
				   "  CASE WHEN status = 'DONE' THEN result "
				   "  ELSE jsonb_build_object('branchId', branch_id, 'error', error) END AS r "
				   BRANCHES_OF_FORK "), "
				   "g AS (SELECT n / %d AS part, min(n) AS first, jsonb_agg(r ORDER BY n) AS v "
				   "  FROM b GROUP BY n / %d), "
				   "ins AS (INSERT INTO allma.large_values (root_execution_id, value_id, part, "
				   "  first_element, execution_id, value, bytes) "
				   "  SELECT $3, $4, part, first, $1, v, pg_column_size(v) FROM g "
				   "  RETURNING bytes, first_element + jsonb_array_length(value) AS past) "
				   "SELECT coalesce(sum(bytes), 0)::int8, coalesce(max(past), 0)::int8 FROM ins",
				   ALLMA_LARGE_PART_ELEMENTS, ALLMA_LARGE_PART_ELEMENTS);
	args[0] = UUIDPGetDatum(&ps->execution_id);
	args[1] = Int64GetDatum(ps->path_id);
	args[2] = UUIDPGetDatum(&ps->root_execution_id);
	args[3] = UUIDPGetDatum(&id);
	allma_owner_begin(&st);
	allma_owner_exec(sql, 4, types, args, NULL, SPI_OK_SELECT);
	bytes = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	allma_owner_end(&st);

	/* small after all: back in line (at most the threshold is read) */
	if (bytes <= allma_out_of_line_threshold)
	{
		return aggregate_back_in_line(types, args, &id);
	}
	return allma_large_make_ref(&id, bytes, count);
}

/*
 * exec_in_path_order runs one of the streamed join's statements as the
 * execution's owner, planned with sorts, sequential and bitmap scans
 * disabled: they read a fork's branches a part at a time in path order from
 * where the last part ended, and the only plan that does that without
 * reading every branch for every part is the primary key's ordered scan --
 * whatever the statistics of a table that was empty a minute ago say.
 */
static void
exec_in_path_order(const char *sql, int nargs, Oid *types, Datum *args, int expected)
{
	static const char *const off[] = {"enable_seqscan", "enable_bitmapscan", "enable_sort", "jit"};
	int			nestlevel = NewGUCNestLevel();

	for (int i = 0; i < lengthof(off); i++)
		(void) set_config_option(off[i], "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	allma_owner_exec(sql, nargs, types, args, NULL, expected);
	AtEOXact_GUC(true, nestlevel);
}

/*
 * collect_out_of_line streams a wide COLLECT_ARRAY aggregate into
 * allma.large_values, one part of ALLMA_LARGE_PART_ELEMENTS branch results
 * per statement, and returns its pointer.  Each statement reads the next
 * part's branches in path order from where the last one ended (by the
 * primary key), so the worker holds one part at a time and nothing it does
 * grows with the fork's width: no sort or window over all branches.
 * Branches are inserted in item order, so path order is the aggregate's
 * order (item, then branch); each part checks that, and on a branch out of
 * that order the parts written are dropped and the aggregate is built by
 * collect_sorted_out_of_line instead.  An aggregate that turns out no
 * larger than allma.out_of_line_threshold is read back and kept in line.
 */
static Jsonb *
collect_out_of_line(AllmaPathState *ps)
{
	Oid			types[8] = {UUIDOID, INT8OID, UUIDOID, UUIDOID, INT8OID, INT8OID, INT4OID, INT8OID};
	Datum		args[8];
	pg_uuid_t	id;
	AllmaAsOwner st;
	int64		bytes = 0;
	int64		count = 0;
	int32		part = 0;
	bool		sorted = true;
	int64		n;

	if (!pg_strong_random(id.data, UUID_LEN))
		elog(ERROR, "allma: could not generate a value id");
	id.data[6] = (id.data[6] & 0x0f) | 0x40;	/* version 4 */
	id.data[8] = (id.data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */

	args[0] = UUIDPGetDatum(&ps->execution_id);
	args[1] = Int64GetDatum(ps->path_id);
	args[2] = UUIDPGetDatum(&ps->root_execution_id);
	args[3] = UUIDPGetDatum(&id);
	args[4] = Int64GetDatum(-1);	/* the last path id read */
	args[5] = Int64GetDatum(-1);	/* the last (item, branch) key read */
	allma_owner_begin(&st);
	do
	{
		bool		isnull;
		SPITupleTable *t;

		CHECK_FOR_INTERRUPTS();
		args[6] = Int32GetDatum(part);
		args[7] = Int64GetDatum(count);
		exec_in_path_order(
						   "WITH c AS (SELECT path_id, k, r, lag(k) OVER (ORDER BY path_id) AS prev FROM ("
						   "  SELECT path_id, "
						   "    coalesce(item_index, 0)::int8 * 4294967296 + coalesce(branch_ordinal, 0) AS k, "
						   "    CASE WHEN status = 'DONE' THEN result "
						   "    ELSE jsonb_build_object('branchId', branch_id, 'error', error) END AS r "
						   "  FROM allma.execution_paths "
						   "  WHERE execution_id = $1 AND path_id > $5 AND parent_path_id = $2 "
						   "  ORDER BY path_id LIMIT " CppAsString2(ALLMA_LARGE_PART_ELEMENTS) ") b), "
						   "g AS (SELECT count(*) AS n, coalesce(max(path_id), 0) AS last, "
						   "  coalesce(max(k), -1) AS klast, coalesce(bool_and(k > coalesce(prev, $6)), true) AS sorted, "
						   "  jsonb_agg(r) AS v FROM c), "
						   "ins AS (INSERT INTO allma.large_values (root_execution_id, value_id, part, "
						   "  first_element, execution_id, value, bytes) "
						   "  SELECT $3, $4, $7, $8, $1, v, pg_column_size(v) FROM g WHERE n > 0 AND sorted "
						   "  RETURNING bytes) "
						   "SELECT n, last, klast, sorted, coalesce((SELECT sum(bytes) FROM ins), 0)::int8 FROM g",
						   8, types, args, SPI_OK_SELECT);
		t = SPI_tuptable;
		n = DatumGetInt64(SPI_getbinval(t->vals[0], t->tupdesc, 1, &isnull));
		args[4] = Int64GetDatum(DatumGetInt64(SPI_getbinval(t->vals[0], t->tupdesc, 2, &isnull)));
		args[5] = Int64GetDatum(DatumGetInt64(SPI_getbinval(t->vals[0], t->tupdesc, 3, &isnull)));
		sorted = DatumGetBool(SPI_getbinval(t->vals[0], t->tupdesc, 4, &isnull));
		bytes += DatumGetInt64(SPI_getbinval(t->vals[0], t->tupdesc, 5, &isnull));
		SPI_freetuptable(t);
		count += n;
		part++;
	} while (sorted && n == ALLMA_LARGE_PART_ELEMENTS);

	allma_owner_end(&st);

	/* small after all: back in line (at most the threshold is read) */
	if (sorted && bytes <= allma_out_of_line_threshold)
	{
		return aggregate_back_in_line(types, args, &id);
	}
	/* a branch out of item order: the parts written go, and all is sorted */
	if (!sorted)
	{
		allma_owner_begin(&st);
		allma_owner_exec("DELETE FROM allma.large_values WHERE root_execution_id = $3 AND value_id = $4 "
						 "AND $1 IS NOT NULL AND $2 IS NOT NULL",
						 4, types, args, NULL, SPI_OK_DELETE);
		allma_owner_end(&st);
		return collect_sorted_out_of_line(ps);
	}
	return allma_large_make_ref(&id, bytes, count);
}

/*
 * allma_fork_join joins a finished fork: counts, failure policy, then the
 * strategy's aggregate, all computed by SQL over the branch rows.
 */
Jsonb *
allma_fork_join(StepRun *run)
{
	AllmaPathState *ps = run->ps;
	Jsonb	   *agg = aggregation_config(run->step);
	const char *strategy = aggregation_strategy(agg);
	Jsonb	   *counts;
	double		total = 0,
				failed = 0,
				pct = -1,
				tolerated_count = -1;
	bool		fail_on_error = true;
	bool		tolerated;
	Jsonb	   *data;

	ALLMA_FAULT_POINT("before-join");

	ps->joined = true;
	counts = spi_jsonb("SELECT jsonb_build_object('total', count(*), "
					   "'failed', count(*) FILTER (WHERE status = 'FAILED'))"
					   BRANCHES_OF_FORK, ps, NULL);
	(void) allma_jsonb_get_number(counts, "total", &total);
	(void) allma_jsonb_get_number(counts, "failed", &failed);
	(void) allma_jsonb_get_bool(agg, "failOnBranchError", &fail_on_error);
	(void) allma_jsonb_get_number(agg, "toleratedFailurePercentage", &pct);
	(void) allma_jsonb_get_number(agg, "toleratedFailureCount", &tolerated_count);

	tolerated = failed == 0 || !fail_on_error ||
		(pct >= 0 && failed * 100.0 <= pct * total) ||
		(tolerated_count >= 0 && failed <= tolerated_count);

	if (!tolerated)
	{
		Jsonb	   *errors = spi_jsonb("SELECT jsonb_agg(jsonb_build_object('branchId', branch_id, "
									   "'itemIndex', item_index, 'error', error) ORDER BY item_index, branch_ordinal) "
									   "FROM (SELECT * " BRANCHES_OF_FORK " AND status = 'FAILED' "
									   "ORDER BY item_index, branch_ordinal LIMIT 100) f", ps, NULL);
		Jsonb	   *first = allma_jsonb_get(allma_jsonb_array_element(errors, 0), "error");
		Jsonb	   *details = allma_jsonb_set_key(NULL, "branchErrors", errors);
		Jsonb	   *detail;

		details = allma_jsonb_set_key(details, "branchCount", allma_jsonb_int((int64) total));
		details = allma_jsonb_set_key(details, "failedBranchCount", allma_jsonb_int((int64) failed));
		detail = allma_jsonb_set_key(NULL, "errorName", allma_jsonb_string(ALLMA_ERR_PARALLEL));
		detail = allma_jsonb_set_key(detail, "errorDetails", details);
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
				 errmsg("One or more parallel branches failed. First error: %s",
						first ? allma_jsonb_to_display_text(allma_jsonb_get(first, "errorMessage")) : "unknown"),
				 errdetail_internal("%s", allma_jsonb_to_cstring(detail))));
	}

	if (strcmp(strategy, "NONE") == 0)
	{
		Jsonb	   *out = aggregated_output(allma_jsonb_null());

		out = allma_jsonb_set_key(out, "aggregationSkipped", allma_jsonb_bool(true));
		out = allma_jsonb_set_key(out, "branchCount", allma_jsonb_int((int64) total));
		return allma_jsonb_set_key(out, "failedBranchCount", allma_jsonb_int((int64) failed));
	}
	if (strcmp(strategy, "SUM") == 0)
		data = spi_jsonb("SELECT to_jsonb(coalesce(sum((result #>> '{}')::numeric) "
						 "FILTER (WHERE jsonb_typeof(result) = 'number'), 0))"
						 BRANCHES_OF_FORK " AND status = 'DONE'", ps, NULL);
	else if (strcmp(strategy, "MERGE_OBJECTS") == 0)
	{
		data = spi_jsonb("SELECT coalesce(jsonb_object_agg(e.key, e.value ORDER BY p.item_index, p.branch_ordinal), '{}') "
						 "FROM allma.execution_paths p, jsonb_each(p.result) e "
						 "WHERE p.execution_id = $1 AND p.parent_path_id = $2 AND p.status = 'DONE' "
						 "AND jsonb_typeof(p.result) = 'object'", ps, NULL);
		if (failed > 0)
			data = allma_jsonb_set_key(data, "_branchErrors",
									   spi_jsonb("SELECT jsonb_agg(jsonb_build_object('branchId', branch_id, "
												 "'error', error) ORDER BY item_index, branch_ordinal)"
												 BRANCHES_OF_FORK " AND status = 'FAILED'", ps, NULL));
	}
	else if (allma_out_of_line_threshold > 0 && total > FORK_INLINE_BRANCHES)
		/* a wide COLLECT_ARRAY lands out of line, in parts */
		data = collect_out_of_line(ps);
	else
		/* COLLECT_ARRAY (and CUSTOM_MODULE, which Allma never implemented) */
		data = spi_jsonb("SELECT coalesce(jsonb_agg(CASE WHEN status = 'DONE' THEN result "
						 "ELSE jsonb_build_object('branchId', branch_id, 'error', error) END "
						 "ORDER BY item_index, branch_ordinal), '[]')"
						 BRANCHES_OF_FORK, ps, NULL);
	return aggregated_output(data ? data : allma_jsonb_null());
}

/*
 * allma_fork_branch_result: what a finished branch contributes: its context's
 * "output" key (Allma), or else its last step's output, reduced by the
 * fork's aggregationConfig.dataPath.
 */
Jsonb *
allma_fork_branch_result(AllmaPathState *ps)
{
	Jsonb	   *result = allma_jsonb_get(ps->context, "output");
	AllmaStep  *fork = allma_flow_step(ps->flow, ps->fork_step_id);
	char	   *data_path;

	if (result == NULL)
		result = ps->last_output ? ps->last_output : allma_jsonb_null();
	if (fork == NULL)
		return result;
	data_path = allma_jsonb_get_cstring(aggregation_config(fork), "dataPath");
	if (data_path != NULL && strcmp(data_path, "$") != 0 && strcmp(data_path, "$.") != 0 &&
		strcmp(data_path, "$.output") != 0)
	{
		Jsonb	   *v = allma_path_get(result, data_path);

		if (v == NULL && strncmp(data_path, "$.output", 8) == 0)
			v = allma_path_get(allma_jsonb_set_key(NULL, "output", result), data_path);
		result = v ? v : allma_jsonb_null();
	}
	return result;
}

/* ----------------------------------------------------------------
 * The definition check
 * ----------------------------------------------------------------
 */

/* the largest aggregationConfig.maxConcurrency */
#define MAX_CONCURRENCY				1000000

static const char *const aggregation_strategies[] = {
	"COLLECT_ARRAY", "MERGE_OBJECTS", "SUM", "NONE", "CUSTOM_MODULE", NULL
};

/* aggregationConfig of a PARALLEL_FORK_MANAGER */
static void
check_aggregation(AllmaChecker *ck, JsonbContainer *step)
{
	const char *parent = "aggregationConfig";
	JsonbContainer *agg = allma_def_get_object(ck, step, NULL, parent, false);
	char	   *strategy;
	char	   *custom;

	if (agg == NULL)
		return;
	strategy = allma_def_get_string(ck, agg, parent, "strategy", false);
	if (strategy != NULL)
		allma_def_check_enum(ck, "aggregationConfig.strategy", strategy,
							 aggregation_strategies);
	allma_def_check_jsonpath_field(ck, agg, parent, "dataPath", false);
	custom = allma_def_get_nonempty_string(ck, agg, parent, "customModuleIdentifier", false);
	if (strategy != NULL && strcmp(strategy, "CUSTOM_MODULE") == 0 && custom == NULL)
		allma_def_error_missing(ck, "aggregationConfig.customModuleIdentifier",
								"Strategy \"CUSTOM_MODULE\" names the module that aggregates.");
	allma_def_get_bool(ck, agg, parent, "failOnBranchError", NULL);
	allma_def_check_number_field(ck, agg, parent, "maxConcurrency", true,
								 0, false, MAX_CONCURRENCY, ERRCODE_ALLMA_INVALID_DEFINITION);
	allma_def_check_number_field(ck, agg, parent, "toleratedFailurePercentage", false,
								 0, false, 100, ERRCODE_ALLMA_INVALID_DEFINITION);
	allma_def_check_number_field(ck, agg, parent, "toleratedFailureCount", true,
								 0, false, INFINITY, ERRCODE_ALLMA_INVALID_DEFINITION);
}

void
allma_check_parallel(AllmaChecker *ck, JsonbContainer *step)
{
	static const char *const aggregation_fields[] = {
		"maxConcurrency", "failOnBranchError", "toleratedFailurePercentage",
		"toleratedFailureCount", "dataPath", NULL
	};
	JsonbContainer *branches;
	JsonbValue	v;

	/* aggregationConfig's fields on the step itself are ignored: say so */
	for (int i = 0; aggregation_fields[i] != NULL; i++)
		if (allma_def_lookup(step, aggregation_fields[i], &v))
			ereport(WARNING,
					(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
					 errmsg("step \"%s\" field \"%s\" is ignored: it belongs in aggregationConfig",
							ck->step, aggregation_fields[i]),
					 errhint("Move it to \"aggregationConfig\": {\"%s\": ...}.", aggregation_fields[i])));

	allma_def_check_jsonpath_field(ck, step, NULL, "itemsPath", false);
	branches = allma_def_get_array(ck, step, NULL, "parallelBranches", false);
	if (branches != NULL)
	{
		int			n;
		int			i;
		int			j;
		AllmaDefMember	   *elems = allma_def_members(branches, &n);
		char	  **ids = palloc0(sizeof(char *) * Max(n, 1));

		for (i = 0; i < n; i++)
		{
			char	   *field = allma_def_element_name("parallelBranches", i);
			JsonbContainer *b;
			JsonbValue	v;

			if (!allma_def_is_object(&elems[i].value))
				allma_def_error_type(ck, field, "an object", &elems[i].value);
			b = elems[i].value.val.binary.data;
			ids[i] = allma_def_get_nonempty_string(ck, b, field, "branchId", true);
			for (j = 0; j < i; j++)
			{
				if (strcmp(ids[i], ids[j]) == 0)
					ereport(ERROR,
							(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
							 errmsg("%s repeats branch id \"%s\"",
									allma_def_where(ck, allma_def_member_name(field, "branchId")),
									ids[i]),
							 errdetail("parallelBranches[%d] has the same branchId.", j)));
			}
			if (!allma_def_lookup(b, "stepInstanceId", &v))
				ereport(ERROR,
						(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
						 errmsg("%s is required",
								allma_def_where(ck, allma_def_member_name(field, "stepInstanceId"))),
						 allma_def_lookup(b, "subFlowDefinitionId", &v) ?
						 errhint("Inline sub-flow branches do not run; start the sub-flow from a START_FLOW_EXECUTION step in the branch.") : 0));
			allma_def_check_step_ref_field(ck, b, field, "stepInstanceId", true);
			allma_def_check_condition_field(ck, b, field, "condition", false);
			allma_def_get_string(ck, b, field, "icon", false);
			allma_def_check_input_mappings(ck, b, field, "inputMappings");
			allma_def_check_literals(ck, b, field);
		}
	}
	check_aggregation(ck, step);
}
