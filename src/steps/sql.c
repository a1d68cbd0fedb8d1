/*-------------------------------------------------------------------------
 *
 * sql.c
 *	  The SQL modules of DATA_LOAD and DATA_SAVE steps (system/sql-query,
 *	  system/sql-execute), and the statement timeout of a step's user code.
 *
 * In Allma, DATA_LOAD and DATA_SAVE steps talk to DynamoDB and S3.  In
 * allma they talk to the database they run in: a step's customConfig
 * carries a single SQL statement with $1..$n placeholders and a list of
 * parameters (JSONPaths into the step's context, or literals).  Values are
 * always bound as parameters, never spliced into the SQL text.  Parameter
 * types are inferred from the statement the way the extended query
 * protocol does it, so "WHERE id = $1" works against an integer column
 * whether the JSON value is 3 or "3".
 *
 * The engine calls in here inside a subtransaction, already running as the
 * role that started the execution; errors are thrown with their original
 * SQLSTATE and the engine maps them to Allma error names.
 *
 * Statement timeout.  A background worker never gets statement_timeout
 * (postgres.c arms it only for client statements), so a step whose SQL
 * never ends would hold its worker forever.  The engine brackets a step's
 * user code with allma_sql_timeout_begin/end, which arm and disarm
 * PostgreSQL's own STATEMENT_TIMEOUT (registered by InitPostgres in every
 * backend).  When it fires, its handler sends the worker SIGINT, whose
 * handler (StatementCancelHandler, installed for every background worker
 * with a database connection) requests a cancel, and the next
 * CHECK_FOR_INTERRUPTS throws 57014; allma_sqlstep_run and
 * allma_binding_invoke (module.c) rethrow it as an error naming the step
 * and the timeout.  The timer never outlives the step: it is disarmed when the
 * user code returns, when its error passes through here, and, as a safety
 * net, when the step's subtransaction or the transaction ends.  A cancel
 * still pending then is dropped, so neither the timer nor a cancel sent
 * to the worker during the step (pg_cancel_backend) can hit the worker's
 * own bookkeeping afterwards.
 *
 * IDENTIFICATION
 *	  src/steps/sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/params.h"
#include "parser/parse_param.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/plancache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "defcheck.h"
#include "jsonb_util.h"
#include "path.h"
#include "sqlstep.h"
#include "steps.h"

/* rows a system/sql-query step may return unless customConfig.maxRows says */
#define SQLSTEP_DEFAULT_MAX_ROWS	10000

/*
 * State of the parser hook: where the variable-parameter machinery of the
 * parser records the type it deduces for each $n.  The array is allocated
 * by us in a context that outlives the parse (the parser may enlarge it
 * with repalloc, which keeps it there).
 */
typedef struct SqlStepParamState
{
	Oid		   *types;
	int			ntypes;
} SqlStepParamState;

/* what the error context callback of parameter binding reports */
typedef struct SqlStepParamErrorInfo
{
	const char *module;
	int			paramno;
	Oid			paramtype;
} SqlStepParamErrorInfo;

/*
 * The step whose user code runs between allma_sql_timeout_begin and _end.
 * timer_armed: we armed STATEMENT_TIMEOUT for it (a timer somebody else
 * armed is left alone).  scope_subid is the subtransaction the step runs
 * in.  scope_step_id lives in TopMemoryContext until the next step.
 */
static bool scope_active = false;
static bool timer_armed = false;
static int	scope_timeout_ms = 0;
static bool scope_timeout_from_step = false;
static char *scope_step_id = NULL;
static SubTransactionId scope_subid = InvalidSubTransactionId;
static bool scope_callbacks_registered = false;


/*
 * param_setup_hook is the ParserSetupHook of SQL steps: parameters get
 * their types from the context they appear in.
 */
static void
param_setup_hook(struct ParseState *pstate, void *arg)
{
	SqlStepParamState *state = (SqlStepParamState *) arg;

	setup_parse_variable_parameters(pstate, &state->types, &state->ntypes);
}

/*
 * param_types_walker returns true when some external Param of the tree does
 * not carry the type finally deduced for its number, or is still of type
 * unknown.  That happens when a parameter was used before its type was
 * settled (e.g. "SELECT $1, $1 = 5"); such a plan must not be run with the
 * deduced types, so the caller prepares the statement again with fixed ones.
 */
static bool
param_types_walker(Node *node, SqlStepParamState *state)
{
	if (node == NULL)
		return false;
	if (IsA(node, Param))
	{
		Param	   *param = (Param *) node;

		if (param->paramkind != PARAM_EXTERN)
			return false;
		if (param->paramid <= 0 || param->paramid > state->ntypes)
			return true;
		return param->paramtype == UNKNOWNOID ||
			param->paramtype != state->types[param->paramid - 1];
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, param_types_walker,
								 (void *) state, 0);
	return expression_tree_walker(node, param_types_walker, (void *) state);
}

/* param_error_callback names the parameter whose value could not be bound */
static void
param_error_callback(void *arg)
{
	SqlStepParamErrorInfo *info = (SqlStepParamErrorInfo *) arg;

	errcontext("binding parameter $%d (type %s) of step module %s",
			   info->paramno, format_type_be(info->paramtype), info->module);
}

/*
 * jsonb_text_form renders a JSON value as the text handed to a type's input
 * function: strings raw, numbers as numeric text, booleans as true/false,
 * objects and arrays as JSON text.  Never called for null.
 */
static char *
jsonb_text_form(Jsonb *value)
{
	JsonbValue	v;

	if (allma_jsonb_scalar(value, &v))
	{
		switch (v.type)
		{
			case jbvString:
				return pnstrdup(v.val.string.val, v.val.string.len);
			case jbvNumeric:
				return DatumGetCString(DirectFunctionCall1(numeric_out,
														   NumericGetDatum(v.val.numeric)));
			case jbvBool:
				return pstrdup(v.val.boolean ? "true" : "false");
			default:
				break;
		}
	}
	return allma_jsonb_to_cstring(value);
}

/* is_json_null: absent or JSON null */
static bool
is_json_null(Jsonb *value)
{
	JsonbValue	v;

	if (value == NULL)
		return true;
	return allma_jsonb_scalar(value, &v) && v.type == jbvNull;
}

/*
 * json_to_datum converts a JSON value into a datum of type "typid" through
 * the type's input function.  Absent and null give SQL NULL.  For json and
 * jsonb (and domains over them) the value keeps its JSON form, so a string
 * stays a JSON string.  A JSON array bound to an array type becomes that
 * array, element by element.  Throws the input function's errors (e.g.
 * 22P02 for "abc" bound to an integer).
 */
static Datum
json_to_datum(Jsonb *value, Oid typid, bool *isnull)
{
	Oid			basetype;
	Oid			elemtype;
	Oid			infunc;
	Oid			ioparam;
	char	   *str;

	*isnull = false;
	if (is_json_null(value))
	{
		*isnull = true;
		return (Datum) 0;
	}

	if (typid == JSONBOID)
		return JsonbPGetDatum(value);

	basetype = getBaseType(typid);
	elemtype = get_element_type(basetype);
	if (OidIsValid(elemtype) && allma_jsonb_is_array(value))
	{
		List	   *elems = allma_jsonb_array_elements(value);
		int			nelems = list_length(elems);
		Datum	   *datums = palloc(sizeof(Datum) * Max(nelems, 1));
		bool	   *nulls = palloc(sizeof(bool) * Max(nelems, 1));
		int			dims[1];
		int			lbs[1];
		int16		elemlen;
		bool		elembyval;
		char		elemalign;
		ListCell   *lc;
		int			i = 0;
		Datum		result;

		foreach(lc, elems)
		{
			datums[i] = json_to_datum((Jsonb *) lfirst(lc), elemtype, &nulls[i]);
			i++;
		}
		get_typlenbyvalalign(elemtype, &elemlen, &elembyval, &elemalign);
		dims[0] = nelems;
		lbs[0] = 1;
		if (nelems == 0)
			result = PointerGetDatum(construct_empty_array(elemtype));
		else
			result = PointerGetDatum(construct_md_array(datums, nulls, 1, dims, lbs,
														elemtype, elemlen,
														elembyval, elemalign));
		/* a domain over an array type still has its constraints checked */
		if (basetype != typid)
		{
			Oid			outfunc;
			bool		isvarlena;

			getTypeOutputInfo(basetype, &outfunc, &isvarlena);
			str = OidOutputFunctionCall(outfunc, result);
			getTypeInputInfo(typid, &infunc, &ioparam);
			return OidInputFunctionCall(infunc, str, ioparam, -1);
		}
		return result;
	}

	if (basetype == JSONBOID || basetype == JSONOID)
		str = allma_jsonb_to_cstring(value);
	else
		str = jsonb_text_form(value);
	getTypeInputInfo(typid, &infunc, &ioparam);
	return OidInputFunctionCall(infunc, str, ioparam, -1);
}

/*
 * step_parameters evaluates customConfig.parameters: strings starting with
 * "$" are JSONPaths over ctx (no match gives NULL), everything else is a
 * literal.  Returns a list of Jsonb * (NULL entries for absent values).
 */
static List *
step_parameters(Jsonb *config, Jsonb *ctx)
{
	Jsonb	   *params = allma_jsonb_get(config, "parameters");
	List	   *elems;
	List	   *result = NIL;
	ListCell   *lc;

	if (params == NULL || is_json_null(params))
		return NIL;
	if (!allma_jsonb_is_array(params))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("customConfig.parameters of a SQL step must be an array")));

	elems = allma_jsonb_array_elements(params);
	foreach(lc, elems)
	{
		Jsonb	   *elem = (Jsonb *) lfirst(lc);
		JsonbValue	v;

		if (allma_jsonb_scalar(elem, &v) && v.type == jbvString &&
			v.val.string.len > 0 && v.val.string.val[0] == '$')
		{
			char	   *path = pnstrdup(v.val.string.val, v.val.string.len);

			result = lappend(result, allma_path_get(ctx, path));
		}
		else
			result = lappend(result, elem);
	}
	return result;
}

/*
 * step_max_rows reads customConfig.maxRows (a positive integer), or gives
 * the default.
 */
static int64
step_max_rows(Jsonb *config)
{
	Jsonb	   *jb = allma_jsonb_get(config, "maxRows");
	double		d;

	if (jb == NULL || is_json_null(jb))
		return SQLSTEP_DEFAULT_MAX_ROWS;
	if (!allma_jsonb_get_number(config, "maxRows", &d) ||
		d != floor(d) || d < 1 || d > (double) (PG_INT32_MAX - 1))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("customConfig.maxRows of a SQL step must be a positive integer"),
				 errdetail("The value is %s.", allma_jsonb_to_cstring(jb))));
	return (int64) d;
}

/*
 * rows_to_jsonb turns SPI's result tuples into a JSON array of objects, one
 * key per column, through to_jsonb on the whole row: json and jsonb columns
 * nest, numbers stay numbers, arrays and composites become JSON arrays and
 * objects, everything else becomes its text form.
 */
static JsonbValue *
rows_to_jsonb(SPITupleTable *tuptable, uint64 nrows)
{
	TupleDesc	tupdesc = tuptable->tupdesc;
	JsonbParseState *state = NULL;
	FmgrInfo	flinfo;
	FuncExpr   *expr;
	uint64		i;

	/* make the row type known to the typcache, so to_jsonb can look it up */
	tupdesc = BlessTupleDesc(tupdesc);

	/* to_jsonb takes its argument's type from the call expression */
	fmgr_info(F_TO_JSONB, &flinfo);
	expr = makeFuncExpr(F_TO_JSONB, JSONBOID,
						list_make1(makeNullConst(RECORDOID, -1, InvalidOid)),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fmgr_info_set_expr((Node *) expr, &flinfo);

	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < nrows; i++)
	{
		Datum		row;
		Jsonb	   *obj;
		JsonbValue	v;

		row = heap_copy_tuple_as_datum(tuptable->vals[i], tupdesc);
		obj = DatumGetJsonbP(FunctionCall1(&flinfo, row));
		pfree(DatumGetPointer(row));
		v.type = jbvBinary;
		v.val.binary.data = &obj->root;
		v.val.binary.len = VARSIZE(obj) - VARHDRSZ;
		pushJsonbValue(&state, WJB_ELEM, &v);
	}
	return pushJsonbValue(&state, WJB_END_ARRAY, NULL);
}

/* push_key pushes an object key */
static void
push_key(JsonbParseState **state, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &k);
}

/*
 * step_timeout_ms returns the timeout of a step's user code in ms (0: none):
 * customConfig.timeoutMs, capped by allma.sql_step_timeout when that is not
 * 0.  *from_step tells whether the step's value is the one that applies.
 * Throws ERRCODE_ALLMA_INVALID_DEFINITION unless timeoutMs is absent, null
 * or a positive integer.
 */
static int
step_timeout_ms(const char *step_id, Jsonb *custom_config, bool *from_step)
{
	Jsonb	   *jb = custom_config ? allma_jsonb_get(custom_config, "timeoutMs") : NULL;
	double		d;

	*from_step = false;
	if (jb == NULL || is_json_null(jb))
		return allma_sql_step_timeout_ms;
	if (!allma_jsonb_get_number(custom_config, "timeoutMs", &d) ||
		d != floor(d) || d < 1 || d > (double) PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("customConfig.timeoutMs of step \"%s\" must be a positive integer",
						step_id),
				 errdetail("The value is %s.", allma_jsonb_to_cstring(jb))));
	if (allma_sql_step_timeout_ms > 0 && allma_sql_step_timeout_ms <= (int) d)
		return allma_sql_step_timeout_ms;
	*from_step = true;
	return (int) d;
}

/*
 * scope_reset ends the timeout scope of the running step, if any: disarms
 * our timer and drops a cancel still pending, which was meant for the
 * step's SQL (from the timer, or from pg_cancel_backend).  Returns whether
 * our timer had fired.  Never throws, so it may run in abort callbacks.
 */
static bool
scope_reset(void)
{
	bool		fired = false;

	if (!scope_active)
		return false;
	if (timer_armed)
	{
		/* a timer that fired is no longer active */
		fired = !get_timeout_active(STATEMENT_TIMEOUT);
		disable_timeout(STATEMENT_TIMEOUT, false);
		timer_armed = false;
	}
	QueryCancelPending = false;
	scope_active = false;
	scope_subid = InvalidSubTransactionId;
	return fired;
}

/* scope_xact_callback: a scope still open when a transaction ends is closed */
static void
scope_xact_callback(XactEvent event, void *arg)
{
	if (scope_active)
		(void) scope_reset();
}

/*
 * scope_subxact_callback: the end of the step's own subtransaction closes
 * its scope (subtransactions of the user's code do not).
 */
static void
scope_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (scope_active && mySubid == scope_subid &&
		(event == SUBXACT_EVENT_ABORT_SUB || event == SUBXACT_EVENT_COMMIT_SUB))
		(void) scope_reset();
}

/*
 * allma_sql_timeout_begin opens the timeout scope of a step's user code and
 * arms STATEMENT_TIMEOUT for it (see step_timeout_ms).  A statement timeout
 * that is already active (a client backend's) is left alone.  Throws
 * ERRCODE_ALLMA_INVALID_DEFINITION for a bad customConfig.timeoutMs.
 */
void
allma_sql_timeout_begin(const char *step_id, Jsonb *custom_config)
{
	bool		from_step;
	int			ms = step_timeout_ms(step_id, custom_config, &from_step);

	if (!scope_callbacks_registered)
	{
		RegisterXactCallback(scope_xact_callback, NULL);
		RegisterSubXactCallback(scope_subxact_callback, NULL);
		scope_callbacks_registered = true;
	}
	/* scopes do not nest; an open one would be a leftover */
	(void) scope_reset();

	if (scope_step_id != NULL)
		pfree(scope_step_id);
	scope_step_id = MemoryContextStrdup(TopMemoryContext, step_id ? step_id : "");
	scope_timeout_ms = ms;
	scope_timeout_from_step = from_step;
	scope_subid = GetCurrentSubTransactionId();
	scope_active = true;

	if (ms > 0 && !get_timeout_active(STATEMENT_TIMEOUT))
	{
		timer_armed = true;
		enable_timeout_after(STATEMENT_TIMEOUT, ms);
	}
}

/*
 * allma_sql_timeout_end closes the scope after the user code returned.  If
 * the timer fired after the last CHECK_FOR_INTERRUPTS of the user code (or
 * the code caught the cancel itself), the SQL has finished all the same,
 * as with statement_timeout in a session: the step succeeds and the cancel
 * is dropped.  Never throws.
 */
void
allma_sql_timeout_end(void)
{
	(void) scope_reset();
}

/*
 * allma_sql_rethrow_step_error is the PG_CATCH block around a step's user code: it
 * closes the timeout scope and rethrows the error.  A cancel caused by the
 * step's timer becomes an error naming the step and its timeout (SQLSTATE
 * 57014 still, so errors.c names it TransientStepError); other errors,
 * including a cancel requested with pg_cancel_backend, pass unchanged.
 * "cxt" is where the error may be copied.
 */
void
allma_sql_rethrow_step_error(MemoryContext cxt)
{
	ErrorData  *edata;

	if (!scope_active || !scope_reset())
		PG_RE_THROW();

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	if (edata->sqlerrcode != ERRCODE_QUERY_CANCELED)
	{
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	FlushErrorState();

	edata->message = psprintf("canceling SQL of step \"%s\" due to its timeout of %d ms",
							  scope_step_id, scope_timeout_ms);
	if (scope_timeout_from_step)
	{
		edata->detail = pstrdup("The step's customConfig.timeoutMs set the timeout; allma.sql_step_timeout caps it.");
		edata->hint = pstrdup("Make the SQL faster, or raise customConfig.timeoutMs.");
	}
	else
	{
		edata->detail = pstrdup("allma.sql_step_timeout set the timeout.");
		edata->hint = pstrdup("Make the SQL faster, or raise allma.sql_step_timeout.");
	}
	edata->detail_log = NULL;
	ReThrowError(edata);
}

/* ----------------------------------------------------------------
 * Saved plans of SQL steps
 *
 * A SQL step's statement is parsed, its parameter types deduced and the
 * statement planned once per worker, then run from a saved plan: the same
 * step runs for every execution of its flow.  The key is the statement
 * text with its number of parameters (the deduced types depend on nothing
 * else).  The plan cache re-plans by itself when a table the statement
 * uses changes, when search_path changes, and when the role changes for a
 * statement that row-level security applies to; privileges are checked at
 * every execution, as the role running the step.  At most
 * SQL_PLAN_CACHE_MAX statements are kept per worker; past that a statement
 * is prepared for each run, as before.
 * ----------------------------------------------------------------
 */
#define SQL_PLAN_CACHE_MAX 256

typedef struct SqlPlanEntry
{
	uint64		key;			/* hash of the text and the parameter count */
	char	   *sql;			/* in TopMemoryContext */
	int			nvalues;
	Oid		   *types;			/* the deduced types, in TopMemoryContext */
	SPIPlanPtr	plan;			/* saved, prepared with those types */
} SqlPlanEntry;

static HTAB *sql_plans = NULL;

static uint64
sql_plan_key(const char *sql, int nvalues)
{
	return hash_combine64(hash_bytes_extended((const unsigned char *) sql, strlen(sql), 0),
						  (uint64) nvalues);
}

/* the saved plan of sql with nvalues parameters, or NULL */
static SqlPlanEntry *
sql_plan_lookup(const char *sql, int nvalues)
{
	uint64		key = sql_plan_key(sql, nvalues);
	SqlPlanEntry *e;

	if (sql_plans == NULL)
		return NULL;
	e = hash_search(sql_plans, &key, HASH_FIND, NULL);
	if (e == NULL || e->nvalues != nvalues || strcmp(e->sql, sql) != 0)
		return NULL;
	return e;
}

/* sql_plan_forget drops a saved plan */
static void
sql_plan_forget(SqlPlanEntry *e)
{
	uint64		key = e->key;

	SPI_freeplan(e->plan);
	pfree(e->sql);
	if (e->types != NULL)
		pfree(e->types);
	hash_search(sql_plans, &key, HASH_REMOVE, NULL);
}

/* sql_plan_room: whether a plan of sql would be saved */
static bool
sql_plan_room(const char *sql, int nvalues)
{
	uint64		key = sql_plan_key(sql, nvalues);

	return sql_plans == NULL ||
		(hash_get_num_entries(sql_plans) < SQL_PLAN_CACHE_MAX &&
		 hash_search(sql_plans, &key, HASH_FIND, NULL) == NULL);
}

/*
 * sql_plan_save keeps plan (prepared with the fixed types) for sql; false
 * when it is not kept (cache full, hash taken by another text): the caller
 * then still owns the plan.
 */
static bool
sql_plan_save(const char *sql, int nvalues, const Oid *types, SPIPlanPtr plan)
{
	uint64		key = sql_plan_key(sql, nvalues);
	SqlPlanEntry *e;
	bool		found;

	if (sql_plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(SqlPlanEntry);
		ctl.hcxt = TopMemoryContext;
		sql_plans = hash_create("allma SQL step plans", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	if (hash_get_num_entries(sql_plans) >= SQL_PLAN_CACHE_MAX ||
		hash_search(sql_plans, &key, HASH_FIND, NULL) != NULL)
		return false;
	if (SPI_keepplan(plan) != 0)
		return false;
	e = hash_search(sql_plans, &key, HASH_ENTER, &found);
	e->sql = MemoryContextStrdup(TopMemoryContext, sql);
	e->nvalues = nvalues;
	e->types = NULL;
	if (nvalues > 0)
	{
		e->types = MemoryContextAlloc(TopMemoryContext, sizeof(Oid) * nvalues);
		memcpy(e->types, types, sizeof(Oid) * nvalues);
	}
	e->plan = plan;
	return true;
}

/*
 * run_statement runs one SQL statement for a system/sql-query
 * (returns_rows) or system/sql-execute step and returns the step output:
 * {"rows": [...], "rowCount": n} or {"rowCount": n}.
 *
 * Throws ERRCODE_ALLMA_INVALID_DEFINITION for a bad customConfig (no sql,
 * several statements, a query that returns no rows), ERRCODE_UNDEFINED_PARAMETER
 * when the SQL uses more parameters than given, ERRCODE_PROGRAM_LIMIT_EXCEEDED
 * when a query returns more than maxRows rows, and whatever the statement
 * itself throws, with its SQLSTATE.
 */
static Jsonb *
run_statement(Jsonb *config, Jsonb *ctx, bool returns_rows)
{
	MemoryContext callercxt = CurrentMemoryContext;
	const char *module = returns_rows ? ALLMA_MODULE_SQL_QUERY : ALLMA_MODULE_SQL_EXECUTE;
	char	   *sql;
	List	   *values;
	int			nvalues;
	int64		max_rows = 0;
	SqlStepParamState *pstate;
	SPIPlanPtr	plan;
	List	   *sources;
	CachedPlanSource *source;
	SqlPlanEntry *cached;
	bool		refix = false;
	ListCell   *lc;
	ParamListInfo paramli = NULL;
	SPIExecuteOptions options;
	int			rc;
	uint64		nrows;
	JsonbParseState *state = NULL;
	JsonbValue	count;
	Jsonb	   *rows = NULL;
	JsonbValue *res;
	Jsonb	   *result;
	int			i;

	sql = allma_jsonb_get_cstring(config, "sql");
	if (sql == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("step module %s needs customConfig.sql", module),
				 errdetail("customConfig.sql must be a string holding one SQL statement.")));
	if (returns_rows)
		max_rows = step_max_rows(config);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* everything below lives in SPI's procedure context until SPI_finish */
	values = step_parameters(config, ctx);
	nvalues = list_length(values);

	pstate = palloc0(sizeof(SqlStepParamState));
	pstate->ntypes = nvalues;
	pstate->types = nvalues > 0 ? palloc0(sizeof(Oid) * nvalues) : NULL;

	cached = sql_plan_lookup(sql, nvalues);
	if (cached != NULL)
	{
		source = (CachedPlanSource *) linitial(SPI_plan_get_plan_sources(cached->plan));
		if (!source->is_valid)
		{
			/*
			 * A table it uses changed since: the parameter types are
			 * deduced again (the plan cache would re-plan with the old ones).
			 */
			sql_plan_forget(cached);
			cached = NULL;
		}
	}
	if (cached != NULL)
	{
		/* checked when it was saved: one statement, enough parameters */
		plan = cached->plan;
		pstate->types = cached->types;
		goto planned;
	}

	plan = SPI_prepare_params(sql, param_setup_hook, pstate, 0);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare_params failed: %s",
			 SPI_result_code_string(SPI_result));

	sources = SPI_plan_get_plan_sources(plan);
	if (list_length(sources) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("customConfig.sql of step module %s holds no statement", module)));
	if (list_length(sources) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("customConfig.sql of step module %s holds %d statements", module,
						list_length(sources)),
				 errdetail("A SQL step runs exactly one statement."),
				 errhint("Split the statements over several steps, or wrap them in a function.")));
	if (pstate->ntypes > nvalues)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_PARAMETER),
				 errmsg("there is no parameter $%d", pstate->ntypes),
				 errdetail("The SQL uses $%d but customConfig.parameters gives %d value(s).",
						   pstate->ntypes, nvalues)));

	/*
	 * Parameters whose type could not be deduced, or was deduced only after
	 * a first use, are settled now (text by default), and the statement is
	 * prepared again with fixed types.
	 */
	source = (CachedPlanSource *) linitial(sources);
	foreach(lc, source->query_list)
	{
		if (param_types_walker((Node *) lfirst(lc), pstate))
			refix = true;
	}
	for (i = 0; i < nvalues; i++)
	{
		if (pstate->types[i] == InvalidOid || pstate->types[i] == UNKNOWNOID)
			pstate->types[i] = TEXTOID;
	}
	/*
	 * Prepared again with the fixed types: needed when a type was settled
	 * late (refix), and for a plan to be saved (one prepared with the
	 * deduction hook would deduce again when the plan cache re-plans it).
	 */
	if (refix || sql_plan_room(sql, nvalues))
	{
		SPI_freeplan(plan);
		plan = SPI_prepare(sql, nvalues, pstate->types);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s",
				 SPI_result_code_string(SPI_result));
		source = (CachedPlanSource *) linitial(SPI_plan_get_plan_sources(plan));
		if (sql_plan_save(sql, nvalues, pstate->types, plan))
			pstate->types = sql_plan_lookup(sql, nvalues)->types;
	}

planned:

	if (returns_rows && source->resultDesc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("statement of step module %s returns no rows", module),
				 errdetail("The statement is %s.", GetCommandTagName(source->commandTag)),
				 errhint("Use %s for statements without a result, or add RETURNING.",
						 ALLMA_MODULE_SQL_EXECUTE)));

	/* bind the values with the deduced types */
	if (nvalues > 0)
	{
		ErrorContextCallback errcallback;
		SqlStepParamErrorInfo errinfo;

		errinfo.module = module;
		errcallback.callback = param_error_callback;
		errcallback.arg = &errinfo;
		errcallback.previous = error_context_stack;
		error_context_stack = &errcallback;

		paramli = makeParamList(nvalues);
		i = 0;
		foreach(lc, values)
		{
			ParamExternData *prm = &paramli->params[i];

			prm->ptype = pstate->types[i];
			prm->pflags = PARAM_FLAG_CONST;
			errinfo.paramno = i + 1;
			errinfo.paramtype = prm->ptype;
			prm->value = json_to_datum((Jsonb *) lfirst(lc), prm->ptype,
									   &prm->isnull);
			i++;
		}

		error_context_stack = errcallback.previous;
	}

	memset(&options, 0, sizeof(options));
	options.params = paramli;
	options.read_only = false;
	/* one row more than allowed tells that the cap was passed */
	options.tcount = returns_rows ? (uint64) max_rows + 1 : 0;
	rc = SPI_execute_plan_extended(plan, &options);
	if (rc == SPI_ERROR_TRANSACTION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("transaction control is not allowed in step module %s", module),
				 errdetail("SQL steps run inside the engine's transaction.")));
	if (rc == SPI_ERROR_COPY)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("COPY to or from the client is not allowed in step module %s", module)));
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan_extended failed: %s",
			 SPI_result_code_string(rc));

	nrows = SPI_processed;
	if (returns_rows)
	{
		if (nrows > (uint64) max_rows)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("statement of step module %s returned more than %lld rows", module,
							(long long) max_rows),
					 errhint("Add a LIMIT to the query or raise customConfig.maxRows.")));
		if (SPI_tuptable == NULL || nrows == 0)
			rows = allma_jsonb_empty_array();
		else
			rows = JsonbValueToJsonb(rows_to_jsonb(SPI_tuptable, nrows));
	}

	/* build the output in the caller's context; SPI_finish frees the rest */
	MemoryContextSwitchTo(callercxt);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	if (returns_rows)
	{
		JsonbValue	v;

		push_key(&state, "rows");
		v.type = jbvBinary;
		v.val.binary.data = &rows->root;
		v.val.binary.len = VARSIZE(rows) - VARHDRSZ;
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	push_key(&state, "rowCount");
	count.type = jbvNumeric;
	count.val.numeric = int64_to_numeric((int64) nrows);
	pushJsonbValue(&state, WJB_VALUE, &count);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	result = JsonbValueToJsonb(res);

	SPI_finish();
	return result;
}

/*
 * allma_sqlstep_run runs a SQL step (see run_statement) and throws what it
 * throws, a cancel by the step's timeout rewritten (allma_sql_rethrow_step_error).
 */
Jsonb *
allma_sqlstep_run(Jsonb *config, Jsonb *ctx, bool returns_rows)
{
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *result = NULL;

	PG_TRY();
	{
		result = run_statement(config, ctx, returns_rows);
	}
	PG_CATCH();
	{
		allma_sql_rethrow_step_error(cxt);
	}
	PG_END_TRY();

	return result;
}

/* ----------------------------------------------------------------
 * The modules (registered in steps/module.c)
 * ----------------------------------------------------------------
 */

/*
 * run_sql_module runs a SQL module of a DATA_LOAD or DATA_SAVE step: config
 * is the module input (the rendered customConfig with the step input
 * merged over it), the parameters' JSONPaths read the path's context, and
 * the statement runs as the role that started the execution.
 */
static Jsonb *
run_sql_module(StepRun *run, Jsonb *config, bool returns_rows)
{
	AllmaUserCodeState st;
	Jsonb	   *result;

	allma_step_enter_user_code(run, &st);
	result = allma_sqlstep_run(config, run->ps->context, returns_rows);
	allma_step_leave_user_code(&st);
	return result;
}

static Jsonb *
run_sql_query(StepRun *run, Jsonb *input)
{
	return run_sql_module(run, input, true);
}

static Jsonb *
run_sql_execute(StepRun *run, Jsonb *input)
{
	return run_sql_module(run, input, false);
}

/*
 * check_sql_config: system/sql-query and system/sql-execute run
 * customConfig.sql with customConfig.parameters; parameters that are
 * strings starting with "$" are JSONPaths into the context.
 */
static void
check_sql_config(AllmaChecker *ck, JsonbContainer *step, const char *module)
{
	JsonbContainer *config = allma_def_get_object(ck, step, NULL, "customConfig", false);
	JsonbContainer *params;
	char	   *detail = psprintf("Module \"%s\" runs the SQL statement in customConfig.sql.",
								  module);

	if (config == NULL || allma_def_get_string(ck, config, "customConfig", "sql", false) == NULL)
		allma_def_error_missing(ck, "customConfig.sql", detail);
	allma_def_get_nonempty_string(ck, config, "customConfig", "sql", true);
	params = allma_def_get_array(ck, config, "customConfig", "parameters", false);
	if (params != NULL)
	{
		int			n;
		int			i;
		AllmaDefMember	   *elems = allma_def_members(params, &n);

		for (i = 0; i < n; i++)
		{
			if (elems[i].value.type == jbvString &&
				elems[i].value.val.string.len > 0 &&
				elems[i].value.val.string.val[0] == '$')
				allma_def_check_jsonpath(ck, allma_def_element_name("customConfig.parameters", i),
										 allma_def_string_value(&elems[i].value));
		}
	}
}

const AllmaBuiltinModule allma_sql_modules[] = {
	{ALLMA_MODULE_SQL_QUERY, ALLMA_MODULES_DATA, false, NULL, run_sql_query, check_sql_config},
	{ALLMA_MODULE_SQL_EXECUTE, ALLMA_MODULES_DATA, false, NULL, run_sql_execute, check_sql_config},
	{NULL}
};
