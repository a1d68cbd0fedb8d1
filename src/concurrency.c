/*-------------------------------------------------------------------------
 *
 * concurrency.c
 *	  Concurrency keys: at most N executions with the same key run at once,
 *	  the others wait with status QUEUED in arrival order, and each end of
 *	  a running one admits the next in the transaction that ends it.
 *
 * Where the key comes from.  The start options {"concurrencyKey": k,
 * "maxConcurrent": n}, or the flow's "concurrency": {"keyTemplate", "limit"}
 * (the template rendered against the input); options win field by field.
 *
 * State.  allma.concurrency_slots has one row per key in use: the limit
 * (the latest start's) and how many executions of the key run.
 * allma.concurrency_queue has one row per queued execution (keyed by its
 * tree's root), with its arrival number and the main path it will start
 * with: a queued execution has no path, so no worker can claim anything
 * of it.
 *
 * Locking.  Starts and ends only write the queue during their transaction
 * and note their keys; when it commits (a pre-commit callback) the
 * transaction locks the slot rows of all the keys it touched, in key order
 * and in one statement, counts each key's running executions afresh and
 * admits what the limits allow.  Every admission and end of a key
 * therefore happens under its row's lock held until commit: two sessions
 * take turns, each seeing what the other committed, and the count never
 * passes the limit.  Taken only at commit and in one order, the locks
 * cannot deadlock (a transaction starting executions of many keys and a
 * worker's pass ending a batch would, if each took them as it went).
 * Admission locks the queued executions' rows with SKIP LOCKED: one that a
 * cancel holds at that moment is passed over (the cancel ends it), so
 * admission never waits for a row while holding a slot.
 *
 * Every way an execution ends calls allma_concurrency_release: a worker's
 * pass (completed, failed; store.c), allma_lifecycle_end_tree (cancelled,
 * timed out, with children; lifecycle.c), and a DELETE of running or
 * queued executions (the statement trigger below).
 *
 * IDENTIFICATION
 *	  src/concurrency.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "concurrency.h"
#include "defcheck.h"
#include "owner.h"
#include "jsonb_util.h"
#include "shmem.h"
#include "template.h"

PG_FUNCTION_INFO_V1(allma_concurrency_release_deleted);

/* statements, planned once per backend */
#define PLAN_UPSERT_SLOT	0
#define PLAN_ENQUEUE		1
#define PLAN_ADMIT			2
#define PLAN_DEQUEUE		4
#define PLAN_FREE_SLOTS		5
#define PLAN_DROP_IDLE		6
#define NPLANS				7
static SPIPlanPtr plans[NPLANS];

/*
 * Admits, for each key of $1 whose slot row the caller holds, as many
 * queued executions as its limit leaves room for, oldest first: each
 * becomes RUNNING (started_at now, the deadline moved by the time it
 * waited), gets its main path (READY after the start step's delay, at the
 * priority its start options asked for), leaves
 * the queue and takes a slot.  Returns the admitted executions.
 */
#define ADMIT_SQL \
	"WITH free AS (" \
	"  SELECT s.concurrency_key AS k, s.max_concurrent - s.running AS n " \
	"    FROM allma.concurrency_slots s " \
	"   WHERE s.concurrency_key = ANY ($1) AND s.running < s.max_concurrent), " \
	"picked AS (" \
	"  SELECT q.* FROM free f CROSS JOIN LATERAL (" \
	"    SELECT q.root_execution_id, q.execution_id, q.concurrency_key, " \
	"           q.step_instance_id, q.context, q.delay_ms, " \
	"           coalesce((x.options->>'priority')::int4, 0) AS priority " \
	"      FROM allma.concurrency_queue q " \
	"      JOIN allma.executions x ON x.execution_id = q.execution_id " \
	"     WHERE q.concurrency_key = f.k AND x.status = 'QUEUED' " \
	"     ORDER BY q.seq LIMIT f.n " \
	"     FOR NO KEY UPDATE OF x SKIP LOCKED) q), " \
	"started AS (" \
	"  UPDATE allma.executions x " \
	"     SET status = 'RUNNING', started_at = n.t, " \
	"         deadline = n.t + (x.deadline - x.started_at) " \
	"    FROM picked p, (SELECT clock_timestamp() AS t) n " \
	"   WHERE x.execution_id = p.execution_id " \
	"  RETURNING x.execution_id), " \
	"paths AS (" \
	"  INSERT INTO allma.execution_paths (execution_id, path_id, step_instance_id, context, due_at, " \
	"                                     priority) " \
	"  SELECT p.execution_id, 0, p.step_instance_id, p.context, " \
	"         clock_timestamp() + p.delay_ms * interval '1 millisecond', p.priority FROM picked p), " \
	"dequeued AS (" \
	"  DELETE FROM allma.concurrency_queue q USING picked p " \
	"   WHERE q.root_execution_id = p.root_execution_id AND q.execution_id = p.execution_id), " \
	"counted AS (" \
	"  UPDATE allma.concurrency_slots s " \
	"     SET running = s.running + c.n, updated_at = clock_timestamp() " \
	"    FROM (SELECT p.concurrency_key, count(*)::int4 AS n FROM picked p GROUP BY 1) c " \
	"   WHERE s.concurrency_key = c.concurrency_key) " \
	"SELECT execution_id FROM started"

static void
run_plan(int which, const char *sql, int nargs, Oid *types, Datum *values, int expected)
{
	int			rc;

	if (plans[which] == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

		if (plan == NULL)
			elog(ERROR, "allma: could not prepare a concurrency statement (%s)",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		plans[which] = plan;
	}
	rc = SPI_execute_plan(plans[which], values, NULL, false, 0);
	if (rc != expected)
		elog(ERROR, "allma: concurrency statement failed (%s)", SPI_result_code_string(rc));
}

/* admits what the keys' limits allow; returns how many */
static uint64
admit(Datum keys)
{
	Oid			types[1] = {TEXTARRAYOID};
	uint64		n;

	run_plan(PLAN_ADMIT, ADMIT_SQL, 1, types, &keys, SPI_OK_SELECT);
	n = SPI_processed;
	/* their paths are new work for the workers */
	for (uint64 i = 0; i < n; i++)
		allma_request_wake_at_commit();
	return n;
}

/* ----------------------------------------------------------------
 * Options and the flow's "concurrency"
 * ----------------------------------------------------------------
 */

static void
bad_key(const char *field, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_INVALID_CONCURRENCY_KEY),
			 errmsg("invalid concurrency key (%s)", field),
			 errdetail("%s", detail),
			 errhint("A concurrency key is a string of 1 to %d bytes.", ALLMA_CONCURRENCY_KEY_MAX)));
}

static void
bad_limit(const char *field, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_INVALID_CONCURRENCY_LIMIT),
			 errmsg("invalid concurrency limit (%s)", field),
			 errdetail("%s", detail),
			 errhint("The limit is an integer from 1 to %d.", ALLMA_CONCURRENCY_LIMIT_MAX)));
}

/* a JSON null counts as absent */
static bool
present(Jsonb *v)
{
	JsonbValue	jv;

	if (v == NULL)
		return false;
	return !(allma_jsonb_scalar(v, &jv) && jv.type == jbvNull);
}

static void
check_key_text(const char *field, const char *key, int len)
{
	if (len == 0)
		bad_key(field, "The key is empty.");
	if (len > ALLMA_CONCURRENCY_KEY_MAX)
		bad_key(field, psprintf("The key is %d bytes long.", len));
	if (memchr(key, '\0', len) != NULL)
		bad_key(field, "The key contains a NUL character.");
}

static char *
key_value(const char *field, Jsonb *value)
{
	JsonbValue	v;

	if (!allma_jsonb_scalar(value, &v) || v.type != jbvString)
		bad_key(field, "The key must be a string.");
	check_key_text(field, v.val.string.val, v.val.string.len);
	return pnstrdup(v.val.string.val, v.val.string.len);
}

static int32
limit_value(const char *field, Jsonb *value)
{
	JsonbValue	v;
	double		d;

	if (!allma_jsonb_scalar(value, &v) || v.type != jbvNumeric)
		bad_limit(field, "The limit must be a number.");
	d = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v.val.numeric)));
	if (d != (double) (int64) d || d < 1 || d > ALLMA_CONCURRENCY_LIMIT_MAX)
		bad_limit(field, psprintf("The limit is %g.", d));
	return (int32) d;
}

bool
allma_concurrency_check_option(const char *key, Jsonb *value)
{
	if (strcmp(key, "concurrencyKey") == 0)
	{
		if (present(value))
			(void) key_value("start option \"concurrencyKey\"", value);
		return true;
	}
	if (strcmp(key, "maxConcurrent") == 0)
	{
		if (present(value))
			(void) limit_value("start option \"maxConcurrent\"", value);
		return true;
	}
	return false;
}

bool
allma_concurrency_resolve(Jsonb *definition, Jsonb *options, Jsonb *input,
						  char **key, int32 *limit)
{
	Jsonb	   *opt_key = options ? allma_jsonb_get(options, "concurrencyKey") : NULL;
	Jsonb	   *opt_limit = options ? allma_jsonb_get(options, "maxConcurrent") : NULL;
	Jsonb	   *conc = definition ? allma_jsonb_get(definition, "concurrency") : NULL;
	bool		has_limit = false;

	*key = NULL;
	*limit = 0;
	if (!allma_jsonb_is_object(conc))
		conc = NULL;

	if (present(opt_key))
		*key = key_value("start option \"concurrencyKey\"", opt_key);
	else if (conc != NULL && present(allma_jsonb_get(conc, "keyTemplate")))
	{
		char	   *tmpl = allma_jsonb_get_cstring(conc, "keyTemplate");
		char	   *rendered;

		if (tmpl == NULL)
			bad_key("flow field \"concurrency.keyTemplate\"", "The key template must be a string.");
		rendered = allma_template_render(tmpl, input);
		check_key_text("flow field \"concurrency.keyTemplate\", rendered against the input",
					   rendered, (int) strlen(rendered));
		*key = rendered;
	}

	if (present(opt_limit))
	{
		*limit = limit_value("start option \"maxConcurrent\"", opt_limit);
		has_limit = true;
	}
	else if (conc != NULL && present(allma_jsonb_get(conc, "limit")))
	{
		*limit = limit_value("flow field \"concurrency.limit\"", allma_jsonb_get(conc, "limit"));
		has_limit = true;
	}

	if (*key == NULL)
	{
		if (present(opt_limit))
			bad_key("start option \"concurrencyKey\"",
					"maxConcurrent was given without a concurrency key (and the flow has no concurrency.keyTemplate).");
		return false;
	}
	if (!has_limit)
		bad_limit("start option \"maxConcurrent\"",
				  "A concurrency key needs a limit: maxConcurrent, or the flow's concurrency.limit.");
	return true;
}

/*
 * allma_concurrency_check_definition: the flow's optional "concurrency":
 * {"keyTemplate": a template (rendered against the input at start),
 * "limit": an integer 1..10000}, nothing else.
 */
void
allma_concurrency_check_definition(AllmaChecker *ck, JsonbContainer *flow)
{
	JsonbValue	v;
	JsonbContainer *c;
	AllmaDefMember *members;
	int			n;
	char	   *tmpl;

	if (!allma_def_lookup(flow, "concurrency", &v) || v.type == jbvNull)
		return;
	c = allma_def_get_object(ck, flow, NULL, "concurrency", true);
	members = allma_def_members(c, &n);
	for (int i = 0; i < n; i++)
		if (strcmp(members[i].key, "keyTemplate") != 0 && strcmp(members[i].key, "limit") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
					 errmsg("%s is not a concurrency setting",
							allma_def_where(ck, allma_def_member_name("concurrency", members[i].key))),
					 errhint("\"concurrency\" has two fields: keyTemplate and limit.")));
	tmpl = allma_def_get_nonempty_string(ck, c, "concurrency", "keyTemplate", true);
	allma_def_check_template(ck, "concurrency.keyTemplate", tmpl);
	if (!allma_template_has_markup(tmpl) && strlen(tmpl) > ALLMA_CONCURRENCY_KEY_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_CONCURRENCY_KEY),
				 errmsg("%s is longer than %d bytes",
						allma_def_where(ck, "concurrency.keyTemplate"), ALLMA_CONCURRENCY_KEY_MAX)));
	if (!allma_def_lookup(c, "limit", &v))
		allma_def_error_missing(ck, "concurrency.limit",
								"How many executions with the same key may run at once.");
	allma_def_check_number_field(ck, c, "concurrency", "limit", true, 1, false,
								 ALLMA_CONCURRENCY_LIMIT_MAX, ERRCODE_ALLMA_INVALID_CONCURRENCY_LIMIT);
}

/* ----------------------------------------------------------------
 * Queue and admission
 *
 * The slot rows are locked only when the transaction commits
 * (XACT_EVENT_PRE_COMMIT), all of its keys at once and in key order:
 * during the transaction, starts and ends only write the queue and note
 * their keys.  A transaction that held one key's row while it went on to
 * start or end executions of other keys could deadlock with another that
 * took the same keys in another order (a transaction starting many keyed
 * executions and a worker's pass ending a batch); locked at commit, in one
 * order, by statements that wait for nothing else, they cannot.
 *
 * At commit, under the locks, each key's running count is counted afresh
 * (its RUNNING executions, as this transaction sees them: every other
 * transaction that admitted or ended one of the key has committed, since
 * it held the row until then; one that has not reached its commit yet
 * counts as still running and admits when it commits).  So the count
 * cannot drift, whatever rolled back.
 * ----------------------------------------------------------------
 */

typedef struct PendingKey
{
	char		key[ALLMA_CONCURRENCY_KEY_MAX + 1];	/* hash key */
	int32		limit;			/* a start's limit, 0: an end's (unknown) */
} PendingKey;

/* the keys the transaction touched, in TopTransactionContext (NULL: none) */
static HTAB *pending = NULL;
static bool callback_registered = false;

static void concurrency_xact_callback(XactEvent event, void *arg);

/* note_key: the transaction touched this key; a start passes its limit */
static void
note_key(const char *key, int32 limit)
{
	PendingKey *pk;
	bool		found;

	if (!callback_registered)
	{
		RegisterXactCallback(concurrency_xact_callback, NULL);
		callback_registered = true;
	}
	if (pending == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = ALLMA_CONCURRENCY_KEY_MAX + 1;
		ctl.entrysize = sizeof(PendingKey);
		ctl.hcxt = TopTransactionContext;
		pending = hash_create("allma concurrency keys", 16, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	/* keys are checked to be at most ALLMA_CONCURRENCY_KEY_MAX bytes */
	pk = hash_search(pending, key, HASH_ENTER, &found);
	if (!found || limit > 0)
		pk->limit = limit;		/* the latest start's */
}

static int
pending_cmp(const void *a, const void *b)
{
	return strcmp(((const PendingKey *) a)->key, ((const PendingKey *) b)->key);
}

void
allma_concurrency_enqueue(pg_uuid_t *execution_id, pg_uuid_t *root_execution_id,
						  const char *key, int32 limit, const char *step_id,
						  Jsonb *context, int64 delay_ms)
{
	Oid			types[6] = {UUIDOID, UUIDOID, TEXTOID, TEXTOID, JSONBOID, INT8OID};
	Datum		values[6];

	/* its arrival number: admission follows it */
	values[0] = UUIDPGetDatum(root_execution_id);
	values[1] = UUIDPGetDatum(execution_id);
	values[2] = CStringGetTextDatum(key);
	values[3] = CStringGetTextDatum(step_id);
	values[4] = JsonbPGetDatum(context);
	values[5] = Int64GetDatum(delay_ms);
	run_plan(PLAN_ENQUEUE,
			 "INSERT INTO allma.concurrency_queue (root_execution_id, execution_id, "
			 "concurrency_key, seq, step_instance_id, context, delay_ms) "
			 "VALUES ($1, $2, $3, nextval('allma.concurrency_queue_seq'), $4, $5, $6)",
			 6, types, values, SPI_OK_INSERT);
	note_key(key, limit);
}

void
allma_concurrency_release(int n, pg_uuid_t *execution_ids, char **keys, bool *running)
{
	Datum	   *queued;
	int			nqueued = 0;

	if (n <= 0)
		return;
	queued = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		if (!running[i])
			queued[nqueued++] = UUIDPGetDatum(&execution_ids[i]);
		note_key(keys[i], 0);
	}
	/* queued executions that ended leave the queue now */
	if (nqueued > 0)
	{
		Oid			types[1] = {UUIDARRAYOID};
		Datum		arg = PointerGetDatum(construct_array(queued, nqueued, UUIDOID, UUID_LEN,
														  false, TYPALIGN_CHAR));

		run_plan(PLAN_DEQUEUE,
				 "DELETE FROM allma.concurrency_queue WHERE execution_id = ANY ($1)",
				 1, types, &arg, SPI_OK_DELETE);
	}
}

/*
 * settle: the commit-time work for the keys the transaction touched, in
 * key order: lock (or create) their slot rows, count what runs, admit what
 * the limits allow, drop rows of idle keys.
 */
static void
settle(void)
{
	int			n = (int) hash_get_num_entries(pending);
	PendingKey *keys = palloc(sizeof(PendingKey) * Max(n, 1));
	PendingKey *pk;
	HASH_SEQ_STATUS seq;
	Datum	   *kd = palloc(sizeof(Datum) * n);
	Datum	   *ld = palloc(sizeof(Datum) * n);
	bool	   *lnull = palloc(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};
	Datum		keyarr;
	Datum		limarr;
	AllmaAsOwner st;

	n = 0;
	hash_seq_init(&seq, pending);
	while ((pk = hash_seq_search(&seq)) != NULL)
		keys[n++] = *pk;
	qsort(keys, n, sizeof(PendingKey), pending_cmp);
	for (int i = 0; i < n; i++)
	{
		kd[i] = CStringGetTextDatum(keys[i].key);
		ld[i] = Int32GetDatum(keys[i].limit);
		lnull[i] = keys[i].limit <= 0;
	}
	keyarr = PointerGetDatum(construct_array(kd, n, TEXTOID, -1, false, TYPALIGN_INT));
	limarr = PointerGetDatum(construct_md_array(ld, lnull, 1, dims, lbs, INT4OID, 4, true,
												TYPALIGN_INT));

	/* SPI needs an outer snapshot; each statement still takes its own */
	PushActiveSnapshot(GetTransactionSnapshot());
	allma_owner_begin(&st);
	{
		Oid			types[2] = {TEXTARRAYOID, INT4ARRAYOID};
		Datum		values[2] = {keyarr, limarr};

		/*
		 * Rows taken in key order (created when missing); a start sets the
		 * key's limit, an end keeps it (a key only ends touched never lacks
		 * its row: its running execution keeps it).
		 */
		run_plan(PLAN_UPSERT_SLOT,
				 "INSERT INTO allma.concurrency_slots AS s (concurrency_key, max_concurrent) "
				 "SELECT u.k, coalesce(u.l, (SELECT max(x.concurrency_limit) FROM allma.executions x "
				 "                           WHERE x.concurrency_key = u.k "
				 "                             AND x.status IN ('QUEUED', 'RUNNING')), 1) "
				 "  FROM unnest($1::text[], $2::int4[]) AS u(k, l) ORDER BY u.k COLLATE \"C\" "
				 "ON CONFLICT (concurrency_key) DO UPDATE "
				 "SET max_concurrent = CASE WHEN $2[array_position($1, EXCLUDED.concurrency_key)] IS NULL "
				 "                     THEN s.max_concurrent ELSE EXCLUDED.max_concurrent END, "
				 "    updated_at = clock_timestamp()",
				 2, types, values, SPI_OK_INSERT);
	}
	{
		Oid			types[1] = {TEXTARRAYOID};

		run_plan(PLAN_FREE_SLOTS,
				 "UPDATE allma.concurrency_slots s "
				 "   SET running = (SELECT count(*) FROM allma.executions x "
				 "                   WHERE x.concurrency_key = s.concurrency_key "
				 "                     AND x.status = 'RUNNING') "
				 " WHERE s.concurrency_key = ANY ($1)",
				 1, types, &keyarr, SPI_OK_UPDATE);
		(void) admit(keyarr);
		run_plan(PLAN_DROP_IDLE,
				 "DELETE FROM allma.concurrency_slots s "
				 " WHERE s.concurrency_key = ANY ($1) AND s.running = 0 "
				 "   AND NOT EXISTS (SELECT FROM allma.concurrency_queue q "
				 "                    WHERE q.concurrency_key = s.concurrency_key)",
				 1, types, &keyarr, SPI_OK_DELETE);
	}
	allma_owner_end(&st);
	PopActiveSnapshot();
}

static void
concurrency_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			/* (settle's own statements note no key) */
			if (pending != NULL && hash_get_num_entries(pending) > 0)
				settle();
			pending = NULL;
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* the table lived in TopTransactionContext */
			pending = NULL;
			break;
		default:
			break;
	}
}

/*
 * allma.concurrency_release_deleted(): statement trigger AFTER DELETE ON
 * allma.executions (transition table deleted_executions).  Running and
 * queued keyed executions deleted by the statement release their keys.
 */
Datum
allma_concurrency_release_deleted(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	int			n;
	pg_uuid_t  *ids;
	char	  **keys;
	bool	   *running;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "allma.concurrency_release_deleted() must be called as a trigger");
	SPI_connect();
	SPI_register_trigger_data(trigdata);
	if (SPI_execute("SELECT execution_id, concurrency_key, status = 'RUNNING' "
					"  FROM deleted_executions "
					" WHERE concurrency_key IS NOT NULL AND status IN ('RUNNING', 'QUEUED')",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "allma: could not read the deleted executions");
	n = (int) SPI_processed;
	if (n > 0)
	{
		SPITupleTable *tt = SPI_tuptable;

		ids = palloc(sizeof(pg_uuid_t) * n);
		keys = palloc(sizeof(char *) * n);
		running = palloc(sizeof(bool) * n);
		for (int i = 0; i < n; i++)
		{
			bool		isnull;

			memcpy(&ids[i], DatumGetUUIDP(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull)),
				   sizeof(pg_uuid_t));
			keys[i] = SPI_getvalue(tt->vals[i], tt->tupdesc, 2);
			running[i] = DatumGetBool(SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull));
		}
		allma_concurrency_release(n, ids, keys, running);
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}
