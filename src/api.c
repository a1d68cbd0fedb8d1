/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The SQL API of flows and executions: allma_create_flow,
 *	  allma_publish_flow, allma_unpublish_flow, allma_delete_flow,
 *	  allma_start_flow, allma_wait and allma_worker_status.
 *
 * Callers need no privileges on allma's tables: these functions record the
 * calling role (the owner of a new flow, the creator of a version, the
 * role an execution's SQL steps run as), check what it may do (acl.c:
 * EDIT to add versions and publish, the owner's privileges to delete,
 * START to start), then do their writes as the bootstrap superuser, with
 * search_path pinned by the function definitions.  Every value reaches SQL
 * as a parameter.  allma_wait reads as the caller, through row-level
 * security.
 *
 * allma_start_flow wakes the workers when the caller's transaction
 * commits (shmem.c), so a step starts within milliseconds of the commit.
 * allma_wait sleeps on a condition variable that workers broadcast after
 * committing terminal executions.
 *
 * IDENTIFICATION
 *	  src/api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "acl.h"
#include "bundle.h"
#include "concurrency.h"
#include "flowcache.h"
#include "jsonb_util.h"
#include "large_value.h"
#include "limit_gucs.h"
#include "owner.h"
#include "priority.h"
#include "shmem.h"
#include "start.h"
#include "validate.h"
#include "spicache.h"

PG_FUNCTION_INFO_V1(allma_create_flow);
PG_FUNCTION_INFO_V1(allma_publish_flow);
PG_FUNCTION_INFO_V1(allma_unpublish_flow);
PG_FUNCTION_INFO_V1(allma_delete_flow);
PG_FUNCTION_INFO_V1(allma_start_flow);
PG_FUNCTION_INFO_V1(allma_wait);
PG_FUNCTION_INFO_V1(allma_worker_status);


static void unknown_version(const char *flow_id, int32 version) pg_attribute_noreturn();

static void
unknown_version(const char *flow_id, int32 version)
{
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_UNKNOWN_VERSION),
			 errmsg("flow \"%s\" has no version %d", flow_id, version)));
}

/* flow_id_arg: the function's first argument, a flow id that must not be null */
static char *
flow_id_arg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("flow id must not be null")));
	return text_to_cstring(PG_GETARG_TEXT_PP(0));
}

/* require_version throws unless the flow has that version (SPI connected, as the owner) */
static void
require_version(const char *flow_id, int32 version)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {CStringGetTextDatum(flow_id), Int32GetDatum(version)};

	allma_owner_exec("SELECT 1 FROM allma.flow_versions WHERE flow_id = $1 AND version = $2",
			 2, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		unknown_version(flow_id, version);
}

/*
 * allma_create_flow(definition jsonb, publish boolean) returns integer:
 * validates the definition and stores it as the next version of its flow.
 */
Datum
allma_create_flow(PG_FUNCTION_ARGS)
{
	Jsonb	   *def = PG_GETARG_JSONB_P(0);
	bool		publish = PG_GETARG_BOOL(1);
	char	   *flow_id;
	int32		version;
	AllmaAsOwner st;
	Oid			types[3] = {TEXTOID, INT4OID, JSONBOID};
	Datum		values[3];
	Oid			caller = GetUserId();

	/* steps naming a reusable step definition get its fields (bundle_defs.c) */
	{
		List	   *unresolved = NIL;
		ListCell   *lc;

		def = allma_step_definitions_resolve(def, caller, &unresolved);
		foreach(lc, unresolved)
			ereport(WARNING,
					(errcode(ERRCODE_ALLMA_DANGLING_REFERENCE),
					 errmsg("step \"%s\" field \"stepDefinitionId\" names step definition \"%s\", "
							"which does not exist or you may not use",
							(char *) lfirst(lc),
							allma_jsonb_get_cstring(allma_jsonb_get(allma_jsonb_get(def, "steps"),
																	lfirst(lc)), "stepDefinitionId")),
					 errdetail("The step keeps only its own fields.")));
	}
	allma_validate_definition(def);
	flow_id = allma_jsonb_get_cstring(def, "id");

	/* a new flow id becomes the caller's; a new version of one needs EDIT */
	version = allma_acl_next_version(ALLMA_OBJ_FLOW, flow_id, caller);

	allma_owner_begin(&st);
	values[0] = CStringGetTextDatum(flow_id);

	/* the stored definition carries its server-assigned version */
	def = allma_jsonb_set_key(def, "version", allma_jsonb_int(version));
	def = allma_jsonb_delete_key(def, "isPublished");
	values[1] = Int32GetDatum(version);
	values[2] = JsonbPGetDatum(def);
	{
		Oid			types4[4] = {TEXTOID, INT4OID, JSONBOID, OIDOID};
		Datum		values4[4] = {values[0], values[1], values[2], ObjectIdGetDatum(caller)};

		allma_owner_exec("INSERT INTO allma.flow_versions (flow_id, version, definition, created_by) "
				 "VALUES ($1, $2, $3, $4::regrole)", 4, types4, values4, NULL, SPI_OK_INSERT);
	}
	if (publish)
		allma_owner_exec("UPDATE allma.flows SET published_version = $2, updated_at = now() "
				 "WHERE flow_id = $1", 2, types, values, NULL, SPI_OK_UPDATE);
	allma_owner_end(&st);

	PG_RETURN_INT32(version);
}

/* allma_publish_flow(flow_id text, version integer): needs EDIT */
Datum
allma_publish_flow(PG_FUNCTION_ARGS)
{
	text	   *flow_id = PG_GETARG_TEXT_PP(0);
	int32		version = PG_GETARG_INT32(1);
	Oid			caller = GetUserId();
	AllmaAsOwner st;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {PointerGetDatum(flow_id), Int32GetDatum(version)};

	allma_acl_check(ALLMA_OBJ_FLOW, text_to_cstring(flow_id), caller, ALLMA_PRIV_EDIT, true);
	allma_owner_begin(&st);
	allma_owner_exec("UPDATE allma.flows SET published_version = $2, updated_at = now() "
			 "WHERE flow_id = $1 AND EXISTS (SELECT 1 FROM allma.flow_versions v "
			 "WHERE v.flow_id = $1 AND v.version = $2)",
			 2, types, values, NULL, SPI_OK_UPDATE);
	if (SPI_processed == 0)
		unknown_version(text_to_cstring(flow_id), version);
	allma_owner_end(&st);
	PG_RETURN_VOID();
}

/*
 * allma_unpublish_flow(flow_id text): the flow has no published version
 * any more (allma_start_flow then needs an explicit version).  Needs EDIT.
 */
Datum
allma_unpublish_flow(PG_FUNCTION_ARGS)
{
	text	   *flow_id = PG_GETARG_TEXT_PP(0);
	Oid			caller = GetUserId();
	AllmaAsOwner st;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {PointerGetDatum(flow_id)};

	allma_acl_check(ALLMA_OBJ_FLOW, text_to_cstring(flow_id), caller, ALLMA_PRIV_EDIT, true);
	allma_owner_begin(&st);
	allma_owner_exec("UPDATE allma.flows SET published_version = NULL, updated_at = now() "
			 "WHERE flow_id = $1", 1, types, values, NULL, SPI_OK_UPDATE);
	allma_owner_end(&st);
	PG_RETURN_VOID();
}

/*
 * allma_delete_flow(flow_id text, version integer DEFAULT NULL) returns
 * integer: deletes one version (NULL: every version) of a flow and returns
 * how many were deleted; a deleted published version is unpublished.  The
 * flow id stays its owner's, with its version counter: numbers are never
 * given twice (workers cache definitions by flow id and version), and
 * nobody else can take over a name that schedules or other flows start.
 * Versions that executions use (running or finished: their history refers
 * to the definition) are refused with object_in_use, and nothing is
 * deleted.  Needs the owner's privileges or allma_admin's.
 */
Datum
allma_delete_flow(PG_FUNCTION_ARGS)
{
	char	   *flow_id;
	Oid			caller = GetUserId();
	AllmaAsOwner st;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	int64		used;
	bool		isnull;
	int32		deleted;

	flow_id = flow_id_arg(fcinfo);
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	if (PG_ARGISNULL(1))
		nulls[1] = 'n';

	allma_acl_check(ALLMA_OBJ_FLOW, flow_id, caller, ALLMA_PRIV_MANAGE, true);
	allma_owner_begin(&st);
	if (!PG_ARGISNULL(1))
		require_version(flow_id, PG_GETARG_INT32(1));
	allma_owner_exec("SELECT count(*) FROM allma.executions "
			 "WHERE flow_id = $1 AND ($2::int4 IS NULL OR flow_version = $2)",
			 2, types, values, nulls, SPI_OK_SELECT);
	used = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (used > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 PG_ARGISNULL(1) ?
				 errmsg("flow \"%s\" is used by executions", flow_id) :
				 errmsg("flow \"%s\" version %d is used by executions", flow_id, PG_GETARG_INT32(1)),
				 errdetail_plural("%lld execution refers to it; its history needs the definition.",
								  "%lld executions refer to it; their history needs the definition.",
								  used, (long long) used),
				 errhint("Unpublish it instead (allma_unpublish_flow).")));
	allma_owner_exec("UPDATE allma.flows SET published_version = NULL, updated_at = now() "
			 "WHERE flow_id = $1 AND ($2::int4 IS NULL OR published_version = $2)",
			 2, types, values, nulls, SPI_OK_UPDATE);
	allma_owner_exec("DELETE FROM allma.flow_versions "
			 "WHERE flow_id = $1 AND ($2::int4 IS NULL OR version = $2)",
			 2, types, values, nulls, SPI_OK_DELETE);
	deleted = (int32) SPI_processed;
	allma_owner_end(&st);
	PG_RETURN_INT32(deleted);
}

/* ----------------------------------------------------------------
 * allma_start_flow
 * ----------------------------------------------------------------
 */

typedef struct StartOptions
{
	int32		version;		/* 0 = published */
	pg_uuid_t  *execution_id;
	int			enable_logs;	/* -1 = unset */
	char	   *start_step;
	char	   *trigger_source;
	int32		priority;		/* seconds of head start in the claim order */
} StartOptions;

static void
bad_option(const char *option, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_INVALID_OPTION),
			 errmsg("invalid start option \"%s\"", option),
			 errdetail("%s", why),
			 errhint("Valid options are version, executionId, enableExecutionLogs, "
					 "startStepInstanceId, triggerSource, concurrencyKey, maxConcurrent and priority.")));
}

static void
parse_start_option(const char *key, Jsonb *value, void *arg)
{
	StartOptions *opts = arg;
	JsonbValue	v;
	bool		scalar = allma_jsonb_scalar(value, &v);

	if (strcmp(key, "version") == 0 || strcmp(key, "flowVersion") == 0)
	{
		if (scalar && v.type == jbvString)
		{
			char	   *s = pnstrdup(v.val.string.val, v.val.string.len);

			if (strcmp(s, "LATEST_PUBLISHED") == 0)
				opts->version = 0;
			else
			{
				char	   *end;
				long		n = strtol(s, &end, 10);

				if (*s == '\0' || *end != '\0' || n <= 0 || n > PG_INT32_MAX)
					bad_option(key, "The version must be a positive integer or \"LATEST_PUBLISHED\".");
				opts->version = (int32) n;
			}
		}
		else if (scalar && v.type == jbvNumeric)
		{
			double		d;

			(void) allma_jsonb_get_number(allma_jsonb_set_key(NULL, "v", value), "v", &d);
			if (d <= 0 || d != (int32) d)
				bad_option(key, "The version must be a positive integer.");
			opts->version = (int32) d;
		}
		else
			bad_option(key, "The version must be a number.");
	}
	else if (strcmp(key, "executionId") == 0 || strcmp(key, "flowExecutionId") == 0)
	{
		char	   *s;

		if (!scalar || v.type != jbvString)
			bad_option(key, "The execution id must be a UUID string.");
		s = pnstrdup(v.val.string.val, v.val.string.len);
		opts->execution_id = DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(s)));
	}
	else if (strcmp(key, "enableExecutionLogs") == 0)
	{
		if (!scalar || v.type != jbvBool)
			bad_option(key, "enableExecutionLogs must be true or false.");
		opts->enable_logs = v.val.boolean ? 1 : 0;
	}
	else if (strcmp(key, "startStepInstanceId") == 0)
	{
		if (!scalar || v.type != jbvString)
			bad_option(key, "startStepInstanceId must be a string.");
		opts->start_step = pnstrdup(v.val.string.val, v.val.string.len);
	}
	else if (strcmp(key, "triggerSource") == 0)
	{
		if (!scalar || v.type != jbvString)
			bad_option(key, "triggerSource must be a string.");
		opts->trigger_source = pnstrdup(v.val.string.val, v.val.string.len);
	}
	else if (allma_concurrency_check_option(key, value))
		;						/* concurrencyKey, maxConcurrent: concurrency.c */
	else if (strcmp(key, "priority") == 0)
	{
		double		d = 0;

		if (scalar && v.type == jbvNumeric)
			(void) allma_jsonb_get_number(allma_jsonb_set_key(NULL, "v", value), "v", &d);
		if (!scalar || v.type != jbvNumeric ||
			!(d >= ALLMA_PRIORITY_MIN && d <= ALLMA_PRIORITY_MAX) || d != (double) (int32) d)
			bad_option(key, psprintf("The priority must be an integer from %d to %d "
									 "(seconds of head start in the claim order; the default is 0).",
									 ALLMA_PRIORITY_MIN, ALLMA_PRIORITY_MAX));
		opts->priority = (int32) d;
	}
	else
		bad_option(key, "allma does not know this option.");
}

/*
 * resolve_version: the version to start, the requested one (which must
 * exist: a backend may still cache a deleted one) or else the published
 * one.  The flow exists (checked with its START privilege).
 */
static int32
resolve_version(const char *flow_id, int32 requested)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(flow_id)};
	bool		isnull;
	Datum		d;

	if (requested > 0)
	{
		require_version(flow_id, requested);
		return requested;
	}
	allma_owner_exec("SELECT published_version FROM allma.flows WHERE flow_id = $1",
			 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		allma_acl_unknown(ALLMA_OBJ_FLOW, flow_id);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_NOT_PUBLISHED),
				 errmsg("flow \"%s\" has no published version", flow_id),
				 errhint("Publish a version with allma_publish_flow(), or pass {\"version\": N} in the options.")));
	return DatumGetInt32(d);
}

/*
 * check_input_size: an execution starts only when its input fits
 * allma.max_input_size (a too large input would otherwise fail the first
 * step, with an error about its output).
 */
static void
check_input_size(Size size)
{
	if (size > (Size) allma_max_input_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the flow input is too large: %zu bytes, more than allma.max_input_size (%d bytes)",
						size, allma_max_input_bytes),
				 errdetail("The execution context starts as the input; steps then add to it, within allma.max_context_size."),
				 errhint("Pass a reference to the data (a file id, a row key) instead of the data, "
						 "or ask an administrator to raise allma.max_input_size.")));
}

/*
 * allma_start_flow(flow_id text, input jsonb, options jsonb) returns uuid.
 */
Datum
allma_start_flow(PG_FUNCTION_ARGS)
{
	Jsonb	   *options;
	StartOptions opts = {0, NULL, -1, NULL, NULL, 0};
	AllmaStartRequest req;

	memset(&req, 0, sizeof(req));
	req.flow_id = flow_id_arg(fcinfo);
	req.input = PG_ARGISNULL(1) ? allma_jsonb_empty_object() : PG_GETARG_JSONB_P(1);
	options = PG_ARGISNULL(2) ? allma_jsonb_empty_object() : PG_GETARG_JSONB_P(2);

	if (!allma_jsonb_is_object(req.input))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("flow input must be a JSON object"),
				 errdetail("Allma places the input's fields at the root of the execution context.")));
	if (!allma_jsonb_is_object(options))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_OPTION),
				 errmsg("start options must be a JSON object")));
	check_input_size(VARSIZE(req.input));
	allma_jsonb_foreach_key(options, parse_start_option, &opts);

	req.options = options;
	req.version = opts.version;
	req.execution_id = opts.execution_id;
	req.enable_logs = opts.enable_logs;
	req.start_step = opts.start_step;
	req.trigger_source = opts.trigger_source;
	req.priority = opts.priority;
	req.starter = GetUserId();
	req.parent_path_id = -1;
	PG_RETURN_UUID_P(allma_start_execution(&req));
}

/*
 * allma_start_execution starts an execution: the one thing allma_start_flow,
 * a sub-flow step and allma_redrive_execution do.  START on the flow is
 * checked for req->starter, who the execution runs as; the version is
 * resolved and pinned; a caller-chosen id that exists is an idempotent
 * start (the same flow) and starts nothing.  The writes are done as the
 * bootstrap superuser; the workers are woken when the transaction commits.
 */
pg_uuid_t *
allma_start_execution(const AllmaStartRequest *req)
{
	const char *flow_id = req->flow_id;
	Jsonb	   *input = req->input;
	Oid			caller = req->starter;
	AllmaAsOwner st;
	int32		version;
	AllmaFlow  *flow;
	AllmaStep  *start;
	pg_uuid_t  *execution_id;
	Jsonb	   *context;
	Jsonb	   *flow_vars;
	bool		logs;
	TimestampTz due;
	Datum		uuid_text;
	bool		tree = req->parent_execution_id != NULL || req->redrive_of != NULL;
	char	   *ckey = NULL;
	int32		climit = 0;
	bool		keyed;

	if (req->execution_id != NULL)
		execution_id = req->execution_id;
	else
		execution_id = DatumGetUUIDP(DirectFunctionCall1(gen_random_uuid, (Datum) 0));

	/* starting needs START; an unknown flow says so */
	allma_acl_check(ALLMA_OBJ_FLOW, flow_id, caller, ALLMA_PRIV_START, false);

	allma_owner_begin(&st);

	version = resolve_version(flow_id, req->version);
	flow = allma_flow_get(flow_id, version);
	if (flow == NULL)
		unknown_version(flow_id, version);

	start = allma_flow_step(flow, req->start_step ? req->start_step : flow->start_step);
	if (start == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_OPTION),
				 errmsg("flow \"%s\" version %d has no step \"%s\"", flow_id, version,
						req->start_step ? req->start_step : flow->start_step)));

	uuid_text = DirectFunctionCall1(uuid_out, UUIDPGetDatum(execution_id));

	logs = req->enable_logs >= 0 ? req->enable_logs : (flow->enable_logs != 0);

	if (req->context != NULL)
	{
		/* a redrive's context: its flow_variables name the new execution */
		Jsonb	   *vars = allma_jsonb_get(req->context, "flow_variables");

		context = req->context;
		if (allma_jsonb_is_object(vars))
			context = allma_jsonb_set_key(context, "flow_variables",
										  allma_jsonb_set_key(vars, "flowExecutionId",
															  allma_jsonb_string(DatumGetCString(uuid_text))));
	}
	else
	{
		/*
		 * flow_variables: its agents', the version's, then the input's, then
		 * flowExecutionId
		 */
		Jsonb	   *input_vars = allma_jsonb_get(input, "flow_variables");

		flow_vars = allma_jsonb_concat(allma_agent_flow_variables(flow_id, true),
									   flow->flow_variables);
		if (allma_jsonb_is_object(input_vars))
			flow_vars = allma_jsonb_concat(flow_vars, input_vars);
		flow_vars = allma_jsonb_set_key(flow_vars, "flowExecutionId",
										allma_jsonb_string(DatumGetCString(uuid_text)));
		context = allma_jsonb_set_key(input, "flow_variables", flow_vars);
	}

	/* a concurrency key: the execution starts QUEUED (concurrency.c) */
	keyed = allma_concurrency_resolve(flow->definition, req->options, input, &ckey, &climit);

	{
		Oid			types[17] = {UUIDOID, TEXTOID, INT4OID, JSONBOID, JSONBOID,
			BOOLOID, OIDOID, TEXTOID, UUIDOID, UUIDOID, INT4OID, INT8OID, TEXTOID,
		UUIDOID, TEXTOID, INT4OID, TIMESTAMPTZOID};
		Datum		values[17];
		char		nulls[17] = "                 ";

		values[0] = UUIDPGetDatum(execution_id);
		values[1] = CStringGetTextDatum(flow_id);
		values[2] = Int32GetDatum(version);
		values[3] = JsonbPGetDatum(input);
		values[4] = JsonbPGetDatum(req->options ? req->options : allma_jsonb_empty_object());
		values[5] = BoolGetDatum(logs);
		values[6] = ObjectIdGetDatum(caller);
		values[7] = req->trigger_source ? CStringGetTextDatum(req->trigger_source) : (Datum) 0;
		if (req->trigger_source == NULL)
			nulls[7] = 'n';
		/* the tree: a top-level execution is its own root */
		values[8] = UUIDPGetDatum(req->parent_execution_id);
		if (req->parent_execution_id == NULL)
			nulls[8] = 'n';
		values[9] = UUIDPGetDatum(req->root_execution_id ? req->root_execution_id : execution_id);
		values[10] = Int32GetDatum(req->depth);
		values[11] = Int64GetDatum(req->parent_path_id);
		if (req->parent_path_id < 0)
			nulls[11] = 'n';
		values[12] = req->parent_step_id ? CStringGetTextDatum(req->parent_step_id) : (Datum) 0;
		if (req->parent_step_id == NULL)
			nulls[12] = 'n';
		values[13] = UUIDPGetDatum(req->redrive_of);
		if (req->redrive_of == NULL)
			nulls[13] = 'n';
		values[14] = keyed ? CStringGetTextDatum(ckey) : (Datum) 0;
		if (!keyed)
			nulls[14] = 'n';
		values[15] = Int32GetDatum(climit);
		values[16] = TimestampTzGetDatum(GetCurrentTimestamp());

		/*
		 * Only sub-flows and redrives name 1.1's columns: a 1.0 schema (the
		 * library updated, ALTER EXTENSION not yet run) still starts flows.
		 */
		allma_owner_exec(keyed ?
						 "INSERT INTO allma.executions (execution_id, flow_id, flow_version, input, "
						 "options, enable_execution_logs, started_by, trigger_source, "
						 "parent_execution_id, root_execution_id, depth, parent_path_id, "
						 "parent_step_instance_id, redrive_of, status, concurrency_key, "
						 "concurrency_limit, started_at, queued_at) "
						 "VALUES ($1, $2, $3, $4, $5, $6, $7::regrole, $8, $9, $10, $11, $12, $13, $14, "
						 "'QUEUED', $15, $16, $17, $17) "
						 "ON CONFLICT (execution_id) DO NOTHING RETURNING 1" :
						 tree ?
						 "INSERT INTO allma.executions (execution_id, flow_id, flow_version, input, "
						 "options, enable_execution_logs, started_by, trigger_source, "
						 "parent_execution_id, root_execution_id, depth, parent_path_id, "
						 "parent_step_instance_id, redrive_of) "
						 "VALUES ($1, $2, $3, $4, $5, $6, $7::regrole, $8, $9, $10, $11, $12, $13, $14) "
						 "ON CONFLICT (execution_id) DO NOTHING RETURNING 1" :
						 "INSERT INTO allma.executions (execution_id, flow_id, flow_version, input, "
						 "options, enable_execution_logs, started_by, trigger_source, root_execution_id) "
						 "VALUES ($1, $2, $3, $4, $5, $6, $7::regrole, $8, $10) "
						 "ON CONFLICT (execution_id) DO NOTHING RETURNING 1",
						 17, types, values, nulls, SPI_OK_INSERT_RETURNING);
	}

	if (SPI_processed == 0)
	{
		/*
		 * The caller chose an id that exists: idempotent start.  An
		 * execution the caller may not see answers like an unknown flow,
		 * so that ids of other roles' executions cannot be probed.
		 */
		Oid			types[1] = {UUIDOID};
		Datum		values[1] = {UUIDPGetDatum(execution_id)};
		char	   *existing_flow = NULL;
		Oid			starter = InvalidOid;

		allma_owner_exec("SELECT flow_id, started_by FROM allma.executions WHERE execution_id = $1",
				 1, types, values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			bool		isnull;

			existing_flow = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			starter = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 2, &isnull));
		}
		if (existing_flow == NULL ||
			!(allma_acl_is_admin(caller) || has_privs_of_role(caller, starter)))
			allma_acl_unknown(ALLMA_OBJ_FLOW, flow_id);
		if (strcmp(existing_flow, flow_id) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_EXECUTION_CONFLICT),
					 errmsg("execution %s already exists for flow \"%s\"",
							DatumGetCString(uuid_text), existing_flow),
					 errdetail("A start with a caller-chosen executionId is idempotent only for the same flow.")));
		allma_owner_end(&st);
		return execution_id;
	}

	/* big input values go out of line before a worker ever loads them */
	context = allma_large_offload_context_in(req->root_execution_id ? req->root_execution_id : execution_id,
											 execution_id, context);

	if (keyed)
	{
		/* no path until admitted: the queue row keeps what it starts with */
		allma_concurrency_enqueue(execution_id,
								  req->root_execution_id ? req->root_execution_id : execution_id,
								  ckey, climit, start->id, context,
								  allma_step_delay_ms(start, true));
		allma_owner_end(&st);
		return execution_id;
	}

	due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
									  allma_step_delay_ms(start, true));
	{
		Oid			types[5] = {UUIDOID, TEXTOID, JSONBOID, TIMESTAMPTZOID, INT4OID};
		Datum		values[5];
		int			level;

		values[0] = UUIDPGetDatum(execution_id);
		values[1] = CStringGetTextDatum(start->id);
		values[2] = JsonbPGetDatum(context);
		values[3] = TimestampTzGetDatum(due);
		values[4] = Int32GetDatum(req->priority);
		/*
		 * Keyed planning (spicache.h): the foreign-key check this insert
		 * fires is planned here too, and planned on an executions table a
		 * VACUUM had just emptied it read the whole table for every path
		 * inserted after it (40,000 starts in one transaction: 50 s
		 * instead of 4 s).
		 */
		level = allma_keyed_planning_begin();

		/* only a priority names 1.1's column: a 1.0 schema still starts flows */
		allma_owner_exec(req->priority != 0 ?
						 "INSERT INTO allma.execution_paths (execution_id, path_id, step_instance_id, "
						 "context, due_at, priority) VALUES ($1, 0, $2, $3, $4, $5)" :
						 "INSERT INTO allma.execution_paths (execution_id, path_id, step_instance_id, "
						 "context, due_at) VALUES ($1, 0, $2, $3, $4)",
						 req->priority != 0 ? 5 : 4, types, values, NULL, SPI_OK_INSERT);
		allma_keyed_planning_end(level);
	}
	allma_owner_end(&st);

	allma_request_wake_at_commit();
	return execution_id;
}

/* ----------------------------------------------------------------
 * allma_wait
 * ----------------------------------------------------------------
 */

/*
 * execution_status returns the execution's status (NULL if it is not
 * visible) and whether the current transaction inserted it.  Each call
 * takes a new snapshot.
 */
static char *
execution_status(pg_uuid_t *id, bool *mine)
{
	Oid			types[1] = {UUIDOID};
	Datum		values[1] = {UUIDPGetDatum(id)};
	char	   *status = NULL;
	int			rc;
	MemoryContext outer = CurrentMemoryContext;

	SPI_connect();
	rc = allma_spi_execute("SELECT status, xmin FROM allma.executions WHERE execution_id = $1",
							   1, types, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read allma.executions");
	*mine = false;
	if (SPI_processed == 1)
	{
		bool		isnull;
		TransactionId xmin;

		status = MemoryContextStrdup(outer,
									 SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		xmin = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 2, &isnull));
		*mine = TransactionIdIsCurrentTransactionId(xmin);
	}
	SPI_finish();
	return status;
}

static bool
status_is_terminal(const char *status)
{
	return strcmp(status, "RUNNING") != 0 && strcmp(status, "QUEUED") != 0;
}

/*
 * allma_wait(execution_id uuid, timeout interval) returns text: the status
 * once terminal, or the current status when the timeout passes.
 */
Datum
allma_wait(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *id = PG_GETARG_UUID_P(0);
	Interval   *timeout = PG_GETARG_INTERVAL_P(1);
	TimestampTz deadline;
	char	   *status;
	bool		mine;

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("allma_wait cannot run in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errdetail("Its snapshot would never show the execution finishing."),
				 errhint("Call it in a READ COMMITTED transaction.")));

	deadline = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													   TimestampTzGetDatum(GetCurrentTimestamp()),
													   IntervalPGetDatum(timeout)));

	allma_terminal_wait_prepare();
	for (;;)
	{
		long		secs;
		int			usecs;
		long		remaining_ms;

		status = execution_status(id, &mine);
		if (status == NULL)
		{
			allma_terminal_wait_done();
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("execution %s does not exist",
							DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id))))));
		}
		if (status_is_terminal(status))
			break;
		if (mine)
		{
			allma_terminal_wait_done();
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot wait for an execution started in the same transaction"),
					 errdetail("The workers cannot see the execution until the transaction commits."),
					 errhint("Commit the transaction that called allma_start_flow first.")));
		}
		if (GetCurrentTimestamp() >= deadline)
			break;
		TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
		remaining_ms = Min(secs * 1000 + usecs / 1000 + 1, 1000L);
		allma_terminal_wait(remaining_ms);
	}
	allma_terminal_wait_done();
	PG_RETURN_TEXT_P(cstring_to_text(status));
}

/*
 * allma_worker_status() returns setof (worker, pid, database, state)
 */
Datum
allma_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	AllmaWorkerInfo workers[ALLMA_MAX_WORKERS];
	int			n;

	InitMaterializedSRF(fcinfo, 0);

	n = allma_shmem_list_workers(workers);
	for (int i = 0; i < n; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		char	   *dbname;

		values[0] = Int32GetDatum(workers[i].slot);
		values[1] = Int32GetDatum(workers[i].pid);
		dbname = get_database_name(workers[i].dboid);
		if (dbname)
			values[2] = DirectFunctionCall1(namein, CStringGetDatum(dbname));
		else
			nulls[2] = true;
		values[3] = CStringGetTextDatum(allma_worker_state_name(workers[i].state));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
