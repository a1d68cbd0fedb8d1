/*-------------------------------------------------------------------------
 *
 * completion.c
 *	  onCompletionActions: what a flow does once an execution has ended.
 *
 * When an execution's main path ends and its execution becomes COMPLETED
 * or FAILED (store.c), or a cancel or its execution timeout ends it
 * (CANCELLED, TIMED_OUT: lifecycle.c, in the cancelling session or the
 * worker that times it out), each action of the flow version's
 * onCompletionActions whose executeOnStatus matches (COMPLETED, the
 * default; FAILED; CANCELLED; TIMED_OUT; ANY) and whose condition holds is
 * run, in the same transaction, against Allma's document {...runtimeState, ...context}
 * (runtimeState with the final status and errorInfo):
 *	- LOG_ONLY: a line in the server log naming the execution and the
 *	  action (not the payload: the log is not protected by row-level
 *	  security), and a history row with the payload;
 *	- NOTIFY: NOTIFY <target> with the execution id as the only payload
 *	  (docs/security.md: no data in NOTIFY), sent when the transaction
 *	  commits; a history row;
 *	- API_CALL: a webhook.  It becomes a path of its own (path id -1 - the
 *	  action's index) whose one step, of the internal type
 *	  COMPLETION_ACTION, sends the payload through the worker's HTTP client
 *	  like any step: after the commit, at-least-once, with an
 *	  Idempotency-Key that is the same for every attempt, retried with
 *	  backoff (the action's "retries", default 5 retries 1 s apart doubling)
 *	  on any failure, each attempt a history row;
 *	- the types Allma defines that allma does not run (SQS_SEND, SNS_SEND,
 *	  CUSTOM_LAMBDA_INVOKE, DATA_SAVE): a FAILED history row saying so.
 * Nothing an action does changes the execution's outcome: planning an
 * action runs in a subtransaction, and an error (a condition that cannot
 * be evaluated, a bad URL) becomes a FAILED history row of that action.
 *
 * Webhook signatures: with "signingSecret": "NAME" the request carries
 *	  X-Allma-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 * The secret is used under the security model's rules (secret_use.h: the
 * starter and the flow version's creator hold USAGE on it, and the URL's
 * host is one of its allowed hosts); it and the signature are only in the
 * headers that are sent, never in a table.
 *
 * The payload: payloadTemplate ({key: JSONPath} over the document), or by
 * default {flowExecutionId, flowDefinitionId, flowDefinitionVersion,
 * status, errorInfo}.
 *
 * IDENTIFICATION
 *	  src/steps/completion.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/uuid.h"

#include "completion.h"
#include "condition.h"
#include "engine.h"
#include "errors.h"
#include "jsonb_util.h"
#include "path.h"
#include "store.h"
#include "steps.h"
#include "template.h"

#define ACTION_STEP_FMT		"onCompletionActions[%d]"

/* the retries of a webhook without its own "retries" */
#define DEFAULT_RETRIES \
	"{\"count\": 5, \"intervalSeconds\": 1, \"backoffRate\": 2, \"maxDelaySeconds\": 300}"

static Jsonb *webhook_start(StepRun *run);
static Jsonb *webhook_complete(StepRun *run);

/* the internal step type of a webhook's path (not in step.c's table: no definition names it) */
const AllmaStepType allma_step_type_completion = {
	"COMPLETION_ACTION", ALLMA_MODULE_NONE, NULL, 0, NULL,
	ALLMA_STEP_SENDS, webhook_start, webhook_complete, 0
};

static SPIPlanPtr insert_path_plan = NULL;
static SPIPlanPtr insert_record_plan = NULL;
static SPIPlanPtr ended_plan = NULL;

void
allma_completion_reset(void)
{
	if (insert_path_plan != NULL)
		SPI_freeplan(insert_path_plan);
	if (insert_record_plan != NULL)
		SPI_freeplan(insert_record_plan);
	if (ended_plan != NULL)
		SPI_freeplan(ended_plan);
	insert_path_plan = NULL;
	insert_record_plan = NULL;
	ended_plan = NULL;
}

/* ----------------------------------------------------------------
 * The webhook steps of a cached flow
 * ----------------------------------------------------------------
 */

bool
allma_completion_is_webhook(Jsonb *action)
{
	char	   *type = allma_jsonb_get_cstring(action, "actionType");

	return type != NULL && strcmp(type, "API_CALL") == 0;
}

void
allma_completion_parse_step(AllmaStep *step, int index, Jsonb *action)
{
	Jsonb	   *retries = allma_jsonb_get(action, "retries");

	memset(step, 0, sizeof(*step));
	step->id = psprintf(ACTION_STEP_FMT, index);
	step->def = action;
	step->type_name = pstrdup(allma_step_type_completion.name);
	step->type = &allma_step_type_completion;
	if (!allma_jsonb_is_object(retries))
		retries = allma_jsonb_parse(DEFAULT_RETRIES);
	step->on_error = allma_jsonb_set_key(NULL, "retries", retries);
	step->default_max_transitions = 5;
}

/* ----------------------------------------------------------------
 * Planning the actions of an execution that has just ended
 * ----------------------------------------------------------------
 */

static char *
uuid_text(pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}

/* the document actions see: {...runtimeState, ...context} */
static Jsonb *
action_document(AllmaPathState *ps, const char *status)
{
	Jsonb	   *rs = allma_runtime_state(ps);

	rs = allma_jsonb_set_key(rs, "status", allma_jsonb_string(status));
	if (ps->failed && ps->error != NULL)
		rs = allma_jsonb_set_key(rs, "errorInfo", ps->error);
	return allma_jsonb_concat(rs, ps->context);
}

static Jsonb *
action_payload(Jsonb *action, Jsonb *doc)
{
	Jsonb	   *tmpl = allma_jsonb_get(action, "payloadTemplate");
	Jsonb	   *payload = allma_jsonb_empty_object();

	if (allma_jsonb_is_object(tmpl))
	{
		ListCell   *lc;

		foreach(lc, allma_jsonb_object_keys(tmpl))
		{
			char	   *key = lfirst(lc);
			char	   *path = allma_jsonb_get_cstring(tmpl, key);
			Jsonb	   *v = path ? allma_path_get(doc, path) : NULL;

			if (v != NULL)
				payload = allma_dotpath_set(payload, key, v);
		}
		return payload;
	}
	{
		static const char *const keys[] = {"flowExecutionId", "flowDefinitionId",
		"flowDefinitionVersion", "status", "errorInfo"};

		for (int i = 0; i < lengthof(keys); i++)
		{
			Jsonb	   *v = allma_jsonb_get(doc, keys[i]);

			if (v != NULL)
				payload = allma_jsonb_set_key(payload, keys[i], v);
		}
	}
	return payload;
}

/* a history row of action "index" (path -1 - index, attempt 1) */
static void
record_action(AllmaPathState *ps, int index, const char *status, Jsonb *output,
			  Jsonb *error, Jsonb *details)
{
	Datum		args[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	MemoryContext cxt = CurrentMemoryContext;
	int			rc;

	if (insert_record_plan == NULL)
	{
		Oid			types[8] = {UUIDOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, JSONBOID,
		JSONBOID, JSONBOID};

		insert_record_plan = allma_store_prepare("INSERT INTO allma.step_executions "
												 "  (execution_id, path_id, seq, step_instance_id, step_type, "
												 "   attempt, status, output, error, details, started_at, ended_at) "
												 "VALUES ($1, $2, 1, $3, $4, 1, $5, $6, $7, $8, "
												 "        clock_timestamp(), clock_timestamp()) "
												 "ON CONFLICT DO NOTHING", 8, types);
	}
	args[0] = UUIDPGetDatum(&ps->execution_id);
	args[1] = Int64GetDatum(-1 - (int64) index);
	args[2] = CStringGetTextDatum(psprintf(ACTION_STEP_FMT, index));
	args[3] = CStringGetTextDatum(allma_step_type_completion.name);
	args[4] = CStringGetTextDatum(status);
	output = ps->logs ? output : NULL;
	args[5] = output ? JsonbPGetDatum(output) : (Datum) 0;
	nulls[5] = output ? ' ' : 'n';
	args[6] = error ? JsonbPGetDatum(error) : (Datum) 0;
	nulls[6] = error ? ' ' : 'n';
	args[7] = details ? JsonbPGetDatum(details) : (Datum) 0;
	nulls[7] = details ? ' ' : 'n';
	rc = SPI_execute_plan(insert_record_plan, args, nulls, false, 0);
	MemoryContextSwitchTo(cxt);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "allma could not record a completion action: %s", SPI_result_code_string(rc));
}

/* the path of a webhook: its one step sends {url, payload} */
static void
insert_webhook_path(AllmaPathState *ps, int index, Jsonb *context)
{
	Datum		args[4];
	MemoryContext cxt = CurrentMemoryContext;
	int			rc;

	if (insert_path_plan == NULL)
	{
		Oid			types[4] = {UUIDOID, INT8OID, TEXTOID, JSONBOID};

		insert_path_plan = allma_store_prepare("INSERT INTO allma.execution_paths "
											   "  (execution_id, path_id, status, step_instance_id, context, due_at) "
											   "VALUES ($1, $2, 'READY', $3, $4, clock_timestamp()) "
											   "ON CONFLICT DO NOTHING", 4, types);
	}
	args[0] = UUIDPGetDatum(&ps->execution_id);
	args[1] = Int64GetDatum(-1 - (int64) index);
	args[2] = CStringGetTextDatum(psprintf(ACTION_STEP_FMT, index));
	args[3] = JsonbPGetDatum(context);
	rc = SPI_execute_plan(insert_path_plan, args, NULL, false, 0);
	MemoryContextSwitchTo(cxt);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "allma could not start a webhook: %s", SPI_result_code_string(rc));
}

typedef struct PlannedAction
{
	AllmaPathState *ps;
	int			index;
	Jsonb	   *action;
	const char *status;
	Jsonb	   *doc;
} PlannedAction;

static void
plan_action(void *arg)
{
	PlannedAction *pa = arg;
	Jsonb	   *action = pa->action;
	char	   *type = allma_jsonb_get_cstring(action, "actionType");
	char	   *on = allma_jsonb_get_cstring(action, "executeOnStatus");
	char	   *cond = allma_jsonb_get_cstring(action, "condition");
	char	   *target = allma_jsonb_get_cstring(action, "target");
	Jsonb	   *details;
	Jsonb	   *payload;

	if (type == NULL)
		return;
	if (on == NULL)
		on = "COMPLETED";
	if (strcmp(on, "ANY") != 0 && strcmp(on, pa->status) != 0)
		return;
	if (cond != NULL && !allma_condition_eval(cond, pa->doc))
		return;
	payload = action_payload(action, pa->doc);
	details = allma_jsonb_set_key(NULL, "actionType", allma_jsonb_string(type));

	if (strcmp(type, "LOG_ONLY") == 0)
	{
		ereport(LOG,
				(errmsg("allma completion action %d (LOG_ONLY) of execution %s, flow \"%s\" version %d: %s",
						pa->index, uuid_text(&pa->ps->execution_id), pa->ps->flow->flow_id,
						pa->ps->flow->version, pa->status),
				 errdetail("The payload is in allma.step_executions (step \"" ACTION_STEP_FMT "\").",
						   pa->index)));
		record_action(pa->ps, pa->index, "COMPLETED", payload, NULL, details);
	}
	else if (strcmp(type, "NOTIFY") == 0)
	{
		/* validated as a channel name when the flow was stored */
		Async_Notify(target, uuid_text(&pa->ps->execution_id));
		details = allma_jsonb_set_key(details, "channel", allma_jsonb_string(target));
		record_action(pa->ps, pa->index, "COMPLETED", NULL, NULL, details);
	}
	else if (strcmp(type, "API_CALL") == 0)
	{
		char	   *url = allma_template_render(target ? target : "", pa->doc);
		char	   *error = NULL;
		Jsonb	   *ctx = allma_jsonb_empty_object();

		if (!allma_http_check_url(url, &error))
			allma_step_raise_error(ALLMA_ERR_PERMANENT,
								   psprintf("completion action %d has an invalid URL \"%s\": %s",
											pa->index, url, error ? error : "not an http or https URL"),
								   allma_jsonb_empty_object());
		ctx = allma_jsonb_set_key(ctx, "url", allma_jsonb_string(url));
		ctx = allma_jsonb_set_key(ctx, "status", allma_jsonb_string(pa->status));
		ctx = allma_jsonb_set_key(ctx, "payload", payload);
		insert_webhook_path(pa->ps, pa->index, ctx);
	}
	else
		allma_step_raise_error(ALLMA_ERR_PERMANENT,
							   psprintf("completion action type %s is not supported", type),
							   allma_jsonb_empty_object());
}

/*
 * run_action plans one action in a subtransaction: an error rolls back
 * what it did and is recorded as the action's FAILED history row.
 */
static void
run_action(PlannedAction *pa)
{
	ErrorData  *edata = allma_engine_guarded(plan_action, pa);

	if (edata != NULL)
	{
		Jsonb	   *error = allma_error_from_edata(edata, ALLMA_ERR_PERMANENT,
												   psprintf(ACTION_STEP_FMT, pa->index));

		FreeErrorData(edata);
		record_action(pa->ps, pa->index, "FAILED", NULL, error,
					  allma_jsonb_set_key(NULL, "actionType",
										  allma_jsonb_string(allma_jsonb_get_cstring(pa->action, "actionType"))));
	}
}

/*
 * run_actions runs the actions of ps's flow whose executeOnStatus and
 * condition match an execution that ended with "status"
 */
static void
run_actions(AllmaPathState *ps, const char *status)
{
	PlannedAction pa;
	ListCell   *lc;
	int			i = 0;

	pa.ps = ps;
	pa.status = status;
	pa.doc = action_document(ps, status);
	foreach(lc, allma_jsonb_array_elements(ps->flow->completion_actions))
	{
		pa.index = i++;
		pa.action = lfirst(lc);
		if (allma_jsonb_is_object(pa.action))
			run_action(&pa);
	}
}

void
allma_completion_plan(List *paths, List *finished)
{
	ListCell   *lc;

	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);
		ListCell   *lc2;
		char	   *id;
		bool		found = false;

		if (!ps->ended || ps->path_id != 0 || ps->flow == NULL ||
			ps->flow->completion_actions == NULL)
			continue;
		id = uuid_text(&ps->execution_id);
		foreach(lc2, finished)
		{
			if (strcmp(lfirst(lc2), id) == 0)
				found = true;
		}
		if (!found)
			continue;
		run_actions(ps, ps->failed ? "FAILED" : "COMPLETED");
	}
}

/* ----------------------------------------------------------------
 * Executions ended from outside their steps (cancel, execution timeout)
 * ----------------------------------------------------------------
 */

void
allma_completion_plan_ended(int n, pg_uuid_t *ids, const char *status)
{
	Datum	   *elems;
	Datum		arg;
	MemoryContext cxt = CurrentMemoryContext;
	AllmaPathState **states;
	int			rows;
	int			rc;

	if (n <= 0)
		return;
	if (ended_plan == NULL)
	{
		Oid			types[1] = {UUIDARRAYOID};

		/*
		 * The execution as it ended, with the context of its main path
		 * (still there: the paths are dropped after this), else its input
		 */
		ended_plan = allma_store_prepare("SELECT x.execution_id, x.flow_id, x.flow_version, "
										 "       x.enable_execution_logs, x.started_at, x.step_count, x.depth, "
										 "       coalesce(x.root_execution_id, x.execution_id), "
										 "       x.parent_execution_id, x.parent_path_id IS NOT NULL, x.error, "
										 "       coalesce((SELECT p.context FROM allma.execution_paths p "
										 "                  WHERE p.execution_id = x.execution_id AND p.path_id = 0), "
										 "                x.input), "
										 "       x.started_by "
										 "  FROM allma.executions x WHERE x.execution_id = ANY ($1)",
										 1, types);
	}
	elems = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
		elems[i] = UUIDPGetDatum(&ids[i]);
	arg = PointerGetDatum(construct_array(elems, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	rc = SPI_execute_plan(ended_plan, &arg, NULL, false, 0);
	MemoryContextSwitchTo(cxt);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "allma could not read the executions that ended: %s", SPI_result_code_string(rc));

	/* copied out first: the actions run statements of their own */
	rows = (int) SPI_processed;
	states = palloc0(sizeof(AllmaPathState *) * Max(rows, 1));
	for (int r = 0; r < rows; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *flow_id = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		int32		version = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		AllmaFlow  *flow = allma_flow_get(flow_id, version);
		AllmaPathState *ps;
		Datum		d;

		if (flow == NULL || flow->completion_actions == NULL)
			continue;
		ps = palloc0(sizeof(AllmaPathState));
		memcpy(&ps->execution_id, DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull)),
			   sizeof(pg_uuid_t));
		ps->flow = flow;
		ps->logs = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		ps->execution_started_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
		ps->step_count = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
		ps->depth = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
		memcpy(&ps->root_execution_id, DatumGetUUIDP(SPI_getbinval(tup, desc, 8, &isnull)),
			   sizeof(pg_uuid_t));
		d = SPI_getbinval(tup, desc, 9, &isnull);
		ps->has_parent = !isnull;
		if (!isnull)
			memcpy(&ps->parent_execution_id, DatumGetUUIDP(d), sizeof(pg_uuid_t));
		ps->sync_child = DatumGetBool(SPI_getbinval(tup, desc, 10, &isnull));
		d = SPI_getbinval(tup, desc, 11, &isnull);
		ps->error = isnull ? NULL : allma_step_copy_jsonb(DatumGetJsonbP(d));
		ps->context = allma_step_copy_jsonb(DatumGetJsonbP(SPI_getbinval(tup, desc, 12, &isnull)));
		ps->run_as = DatumGetObjectId(SPI_getbinval(tup, desc, 13, &isnull));
		ps->path_id = 0;
		ps->ended = true;
		ps->failed = true;		/* errorInfo: the cancel's or the timeout's error */
		states[r] = ps;
	}
	for (int r = 0; r < rows; r++)
	{
		if (states[r] != NULL)
			run_actions(states[r], status);
	}
}

/* ----------------------------------------------------------------
 * The webhook step
 * ----------------------------------------------------------------
 */

/* "t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>" */
static char *
webhook_signature(const char *secret, int64 t, const char *body)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char		hex[PG_SHA256_DIGEST_LENGTH * 2 + 1];
	char	   *ts = psprintf("%lld", (long long) t);

	if (ctx == NULL ||
		pg_hmac_init(ctx, (const uint8 *) secret, strlen(secret)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) ts, strlen(ts)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) ".", 1) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) body, strlen(body)) < 0 ||
		pg_hmac_final(ctx, digest, sizeof(digest)) < 0)
	{
		pg_hmac_free(ctx);
		elog(ERROR, "allma could not compute a webhook signature");
	}
	pg_hmac_free(ctx);
	hex[hex_encode((const char *) digest, sizeof(digest), hex)] = '\0';
	return psprintf("t=%s,v1=%s", ts, hex);
}

static Jsonb *
webhook_start(StepRun *run)
{
	AllmaPathState *ps = run->ps;
	Jsonb	   *action = run->step->def;
	char	   *url = allma_jsonb_get_cstring(ps->context, "url");
	char	   *status = allma_jsonb_get_cstring(ps->context, "status");
	Jsonb	   *payload = allma_jsonb_get(ps->context, "payload");
	char	   *method = allma_jsonb_get_cstring(action, "apiHttpMethod");
	char	   *secret_name = allma_jsonb_get_cstring(action, "signingSecret");
	char	   *exec = uuid_text(&ps->execution_id);
	char	   *body = allma_jsonb_to_cstring(payload ? payload : allma_jsonb_empty_object());
	Jsonb	   *headers = allma_jsonb_empty_object();
	Jsonb	   *req = allma_jsonb_empty_object();
	char	   *error = NULL;

	if (url == NULL || !allma_http_check_url(url, &error))
		allma_step_raise_error(ALLMA_ERR_PERMANENT,
							   psprintf("completion action \"%s\" has an invalid URL: %s",
										run->step->id, error ? error : "none"),
							   allma_jsonb_empty_object());
	if (method == NULL)
		method = "POST";

	headers = allma_jsonb_set_key(headers, "Content-Type", allma_jsonb_string("application/json"));
	headers = allma_jsonb_set_key(headers, "X-Allma-Execution-Id", allma_jsonb_string(exec));
	headers = allma_jsonb_set_key(headers, "X-Allma-Flow-Id", allma_jsonb_string(ps->flow->flow_id));
	if (status != NULL)
		headers = allma_jsonb_set_key(headers, "X-Allma-Status", allma_jsonb_string(status));

	req = allma_jsonb_set_key(req, "method", allma_jsonb_string(method));
	req = allma_jsonb_set_key(req, "url", allma_jsonb_string(url));
	req = allma_jsonb_set_key(req, "body", allma_jsonb_string(body));
	req = allma_jsonb_set_key(req, "timeoutMs", allma_jsonb_int(allma_http_timeout_ms));
	/* one delivery: the same key on every attempt */
	req = allma_jsonb_set_key(req, "idempotencyKey",
							  allma_jsonb_string(psprintf("%s/%s", exec, run->step->id)));
	allma_step_set_io_request(run, req, headers);

	if (secret_name != NULL)
	{
		AllmaSecretUse use = allma_step_secret_use(run, url);
		char	   *secret = allma_secret_get_for(secret_name, &use);
		char	   *signature = webhook_signature(secret, (int64) time(NULL), body);
		Jsonb	   *sent = allma_jsonb_set_key(allma_jsonb_get(ps->io_request, "headers"),
											   "X-Allma-Signature", allma_jsonb_string(signature));
		MemoryContext oldcxt;

		/* only in the headers that are sent, never stored */
		memset(secret, 0, strlen(secret));
		oldcxt = MemoryContextSwitchTo(run->pathcxt);
		ps->io_send_headers = allma_step_copy_jsonb(sent);
		MemoryContextSwitchTo(oldcxt);
	}
	return NULL;
}

static Jsonb *
webhook_complete(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;

	/* any status but 2xx is a failed delivery: retried, then FAILED */
	(void) allma_step_raise_for_transfer(c, 300, "webhook");
	run->details = allma_jsonb_set_key(NULL, "actionType", allma_jsonb_string("API_CALL"));
	return allma_jsonb_set_key(NULL, "status", allma_jsonb_int(c->status));
}
