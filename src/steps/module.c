/*-------------------------------------------------------------------------
 *
 * module.c
 *	  Module steps, the registry of built-in modules, and module bindings.
 *
 * A module step runs the module its moduleIdentifier names.  Some modules
 * are built in: a registry maps their identifiers to the functions that
 * run them (the transforms of transform.c and join.c, the SQL modules of
 * sql.c), and a step type's row in step.c says which of them it runs
 * (DATA_TRANSFORMATION the transforms, DATA_LOAD and DATA_SAVE the SQL
 * modules).  Any other identifier, and a CUSTOM_LAMBDA_INVOKE step's
 * Lambda ARN, dispatches to a binding in allma.module_bindings: a SQL
 * function (jsonb) RETURNS jsonb bound with allma_bind_module (exact
 * pattern first, then the longest LIKE pattern), or an HTTP endpoint bound
 * with allma_bind_module_http, called like an API_CALL (api.c).
 *
 * This file owns the registry and allma_run_module, the module step types
 * (CUSTOM_LOGIC, CUSTOM_LAMBDA_INVOKE, DATA_LOAD, DATA_SAVE,
 * DATA_TRANSFORMATION), and the binding table's SQL API
 * (allma_bind_module), its lookup and the call of a bound function.
 *
 * IDENTIFICATION
 *	  src/steps/module.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "compat.h"
#include "acl.h"
#include "defcheck.h"
#include "jsonb_util.h"
#include "modules/aws.h"
#include "path.h"
#include "sqlstep.h"
#include "steps.h"
#include "template.h"

PG_FUNCTION_INFO_V1(allma_run_module);
PG_FUNCTION_INFO_V1(allma_bind_module);

/* the binding lookup, prepared once per backend */
static SPIPlanPtr binding_lookup_plan = NULL;

/* ----------------------------------------------------------------
 * Built-in modules
 * ----------------------------------------------------------------
 */

/*
 * The families of built-in modules: each is an array of AllmaBuiltinModule
 * ended by a row with a NULL identifier, in its own file.  A new family is
 * that file plus one line here.
 */
static const AllmaBuiltinModule *const module_families[] = {
	allma_transform_modules,	/* transform.c, join.c */
	allma_sql_modules,			/* sql.c */
	allma_aws_modules,			/* aws_modules.c (src/modules/) */
};

/* the built-in module "identifier", or NULL */
const AllmaBuiltinModule *
allma_module_find(const char *identifier)
{
	if (identifier == NULL)
		return NULL;
	for (int i = 0; i < lengthof(module_families); i++)
	{
		for (const AllmaBuiltinModule *m = module_families[i]; m->identifier; m++)
		{
			if (strcmp(m->identifier, identifier) == 0)
				return m;
		}
	}
	return NULL;
}

/*
 * allma_module_for_step: the built-in module a step of "type" that names
 * "module" runs, or NULL when the step dispatches to a binding.  flowcache.c
 * resolves it once per cached flow.
 */
const AllmaBuiltinModule *
allma_module_for_step(const AllmaStepType *type, const char *module)
{
	const AllmaBuiltinModule *m;

	if (type->builtin_modules == 0 || module == NULL)
		return NULL;
	m = allma_module_find(module);
	return m != NULL && (m->kind & type->builtin_modules) != 0 ? m : NULL;
}

/* "a, b, c": the modules allma_module_run knows, for hints */
static char *
known_modules_list(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(module_families); i++)
	{
		for (const AllmaBuiltinModule *m = module_families[i]; m->identifier; m++)
		{
			if (m->run == NULL)
				continue;
			if (buf.len > 0)
				appendStringInfoString(&buf, ", ");
			appendStringInfoString(&buf, m->identifier);
		}
	}
	return buf.data;
}

/*
 * run_builtin runs a module that is a pure function of its input.  Throws
 * ERRCODE_INVALID_PARAMETER_VALUE when the input is not an object or does
 * not suit the module.
 */
static Jsonb *
run_builtin(const AllmaBuiltinModule *mod, Jsonb *input)
{
	if (!allma_jsonb_is_object(input))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: module input must be a JSON object",
						mod->identifier)));

	return mod->run(mod->identifier, input);
}

/*
 * allma_module_run runs the built-in module "module_identifier" on "input"
 * and returns its output object.  Modules that need a step (the SQL ones)
 * are not run here.
 *
 * Throws ERRCODE_ALLMA_UNKNOWN_MODULE for an identifier that is not such a
 * built-in, and ERRCODE_INVALID_PARAMETER_VALUE when the input is not an
 * object or does not suit the module.
 */
Jsonb *
allma_module_run(const char *module_identifier, Jsonb *input)
{
	const AllmaBuiltinModule *mod = allma_module_find(module_identifier);

	if (mod == NULL || mod->run == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_UNKNOWN_MODULE),
				 errmsg("unknown transformation module \"%s\"",
						module_identifier),
				 errhint("The built-in modules are %s.", known_modules_list())));
	return run_builtin(mod, input);
}

/*
 * allma_run_module(module_identifier text, input jsonb) RETURNS jsonb
 *
 * Lets flow authors try a built-in module from SQL, exactly as a step
 * would run it.
 */
Datum
allma_run_module(PG_FUNCTION_ARGS)
{
	char	   *module_identifier = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *input = PG_GETARG_JSONB_P(1);

	/* the AWS data modules run SQL: from here, as the caller */
	if (allma_aws_module_exists(module_identifier))
		PG_RETURN_JSONB_P(allma_aws_module_run(module_identifier, input, input, NULL));
	PG_RETURN_JSONB_P(allma_module_run(module_identifier, input));
}

/* ----------------------------------------------------------------
 * Module steps
 * ----------------------------------------------------------------
 */

/*
 * invoke_binding runs the binding of "key" (a module identifier or a
 * Lambda ARN) on payload: a SQL function, called as the role that started
 * the execution; or an HTTP endpoint, to which the step leaves a request.
 * error_name is what an error of the function is called (unless it names
 * one itself).
 */
static Jsonb *
invoke_binding(StepRun *run, const char *key, Jsonb *payload,
			   const char *error_name)
{
	char	   *url = NULL;
	Jsonb	   *headers = NULL;
	char	   *pattern = NULL;
	Oid			handler = allma_binding_lookup(key, &url, &headers, &pattern);
	AllmaUserCodeState st;
	Jsonb	   *result;

	if (pattern != NULL)
		allma_acl_use_check(ALLMA_OBJ_MODULE_BINDING, pattern, run->ps->run_as, true, run->step->id);
	if (url != NULL)
	{
		allma_http_binding_send(run, url, headers, payload);
		return NULL;
	}
	if (!OidIsValid(handler))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("no handler is bound to module \"%s\"", key),
				 errdetail("Step \"%s\" (%s) dispatches to a module that allma does not provide.",
						   run->step->id, run->step->type_name),
				 errhint("Bind a SQL function with allma_bind_module('%s', 'my_handler(jsonb)'::regprocedure).",
						 key)));
	run->default_error_name = error_name;
	allma_step_enter_user_code(run, &st);
	result = allma_binding_invoke(handler, payload);
	allma_step_leave_user_code(&st);
	run->default_error_name = ALLMA_ERR_PERMANENT;
	return result;
}

/* true when "key" is bound to a SQL function or an HTTP endpoint */
bool
allma_module_is_bound(const char *key)
{
	char	   *url = NULL;
	Jsonb	   *headers = NULL;
	char	   *pattern = NULL;

	return OidIsValid(allma_binding_lookup(key, &url, &headers, &pattern)) || url != NULL;
}

/* invoke_binding for built-in modules that give way to a binding */
Jsonb *
allma_module_invoke_binding(StepRun *run, const char *key, Jsonb *payload)
{
	return invoke_binding(run, key, payload, ALLMA_ERR_PERMANENT);
}

/*
 * allma_module_step_start runs the module of a DATA_TRANSFORMATION,
 * DATA_LOAD, DATA_SAVE or CUSTOM_LOGIC step: the built-in module the step
 * type runs (resolved when the flow was cached), else the binding of its
 * moduleIdentifier.  The module's input is the rendered customConfig with
 * the step input merged over it.
 */
Jsonb *
allma_module_step_start(StepRun *run)
{
	AllmaStep  *step = run->step;
	const AllmaBuiltinModule *builtin = step->builtin;

	if (builtin != NULL && builtin->run != NULL)
		return run_builtin(builtin, allma_step_module_input(run));
	if (builtin != NULL)
		return builtin->run_in_step(run, allma_step_module_input(run));
	return invoke_binding(run, step->module ? step->module : "", allma_step_module_input(run),
						  ALLMA_ERR_PERMANENT);
}

static Jsonb *
lambda_payload(StepRun *run, const char *key)
{
	Jsonb	   *tmpl = allma_jsonb_get(run->step->def, "payloadTemplate");
	Jsonb	   *correlation = allma_jsonb_get(allma_step_runtime(run), "flowExecutionId");
	Jsonb	   *payload = allma_jsonb_empty_object();

	if (allma_jsonb_is_object(tmpl))
	{
		List	   *keys = allma_jsonb_object_keys(tmpl);
		ListCell   *lc;

		payload = allma_jsonb_set_key(payload, "correlationId", correlation);
		foreach(lc, keys)
		{
			char	   *k = lfirst(lc);
			char	   *path = allma_jsonb_get_cstring(tmpl, k);
			Jsonb	   *v = path ? allma_path_get(run->ps->context, path) : allma_jsonb_get(tmpl, k);

			if (v != NULL)
				payload = allma_jsonb_set_key(payload, k, v);
		}
		return payload;
	}
	payload = allma_jsonb_set_key(payload, "moduleIdentifier", allma_jsonb_string(key));
	payload = allma_jsonb_set_key(payload, "stepInput", allma_step_module_input(run));
	payload = allma_jsonb_set_key(payload, "correlationId", correlation);
	return payload;
}

Jsonb *
allma_lambda_step_start(StepRun *run)
{
	AllmaStep  *step = run->step;
	const char *module = step->module;
	char	   *arn = allma_jsonb_get_cstring(step->def, "lambdaFunctionArnTemplate");
	char	   *key;

	if (arn != NULL)
		key = allma_template_render(arn, allma_step_template_context(run));
	else
		key = module ? pstrdup(module) : pstrdup("");
	/* Allma: a Lambda function error is a TransientStepError */
	return invoke_binding(run, key, lambda_payload(run, key),
						  ALLMA_ERR_TRANSIENT);
}

/*
 * allma_module_step_complete: the response to a module bound to an HTTP
 * endpoint (a module step sends no other request)
 */
Jsonb *
allma_module_step_complete(StepRun *run)
{
	if (run->ps->prev_request != NULL &&
		allma_jsonb_has_key(run->ps->prev_request, "binding"))
		return allma_http_binding_output(run);
	return run->step->type->start(run);
}

/* ----------------------------------------------------------------
 * Module bindings (allma.module_bindings)
 * ----------------------------------------------------------------
 */

/*
 * check_handler_signature throws ERRCODE_INVALID_FUNCTION_DEFINITION unless
 * "handler" is a plain function taking exactly one jsonb and returning one
 * jsonb, and ERRCODE_UNDEFINED_FUNCTION when it does not exist.  Returns
 * whether it is STRICT.
 */
static bool
check_handler_signature(Oid handler)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		ok;
	bool		strict;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(handler));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("module handler function with OID %u does not exist", handler),
				 errhint("Bind the module again with allma_bind_module.")));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	ok = proc->prokind == PROKIND_FUNCTION &&
		proc->pronargs == 1 &&
		proc->proargtypes.values[0] == JSONBOID &&
		proc->prorettype == JSONBOID &&
		!proc->proretset;
	strict = proc->proisstrict;
	ReleaseSysCache(tup);

	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("function %s cannot be a module handler",
						format_procedure(handler)),
				 errdetail("A module handler is a function taking exactly one jsonb argument and returning jsonb.")));
	return strict;
}

/*
 * allma_bind_module(module_or_arn_pattern text, handler regprocedure)
 *	  Binds a module identifier or Lambda ARN (a LIKE pattern) to a handler
 *	  function; binding the same pattern again replaces its handler.
 */
Datum
allma_bind_module(PG_FUNCTION_ARGS)
{
	text	   *pattern = PG_GETARG_TEXT_PP(0);
	Oid			handler = PG_GETARG_OID(1);
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		values[2];
	int			rc;

	if (VARSIZE_ANY_EXHDR(pattern) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("module pattern must not be empty")));
	check_handler_signature(handler);

	values[0] = PointerGetDatum(pattern);
	values[1] = ObjectIdGetDatum(handler);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args("INSERT INTO allma.module_bindings AS b (pattern, handler) "
							   "VALUES ($1, $2::pg_catalog.regprocedure) "
							   "ON CONFLICT (pattern) DO UPDATE "
							   "SET handler = excluded.handler, url = NULL, headers = '{}', "
							   "created_at = pg_catalog.now()",
							   2, argtypes, values, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not store module binding: %s",
			 SPI_result_code_string(rc));
	SPI_finish();

	PG_RETURN_VOID();
}

/*
 * allma_binding_lookup returns the handler bound to "key": the binding whose
 * pattern equals key, else the longest pattern key is LIKE (ties broken by
 * pattern order, for a stable choice); InvalidOid when none; *pattern is
 * the binding's pattern (whose USAGE grants count).  Reads the table with
 * the caller's privileges (the workers run it as their superuser).
 */
Oid
allma_binding_lookup(const char *key, char **url, Jsonb **headers, char **pattern)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	Oid			handler = InvalidOid;
	int			rc;
	MemoryContext caller = CurrentMemoryContext;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (binding_lookup_plan == NULL)
	{
		SPIPlanPtr	plan;

		plan = SPI_prepare("SELECT handler::pg_catalog.oid, url, headers, pattern "
						   "FROM allma.module_bindings "
						   "WHERE pattern OPERATOR(pg_catalog.=) $1 "
						   "OR $1 OPERATOR(pg_catalog.~~) pattern "
						   "ORDER BY pattern OPERATOR(pg_catalog.=) $1 DESC, "
						   "pg_catalog.length(pattern) DESC, pattern "
						   "LIMIT 1",
						   1, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		binding_lookup_plan = plan;
	}

	values[0] = CStringGetTextDatum(key);
	rc = SPI_execute_plan(binding_lookup_plan, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not look up module binding: %s",
			 SPI_result_code_string(rc));
	*url = NULL;
	*headers = NULL;
	*pattern = NULL;
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d;

		*pattern = MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc, 4));

		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						  &isnull);
		if (!isnull)
			handler = DatumGetObjectId(d);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		if (!isnull)
		{
			MemoryContext spicxt = MemoryContextSwitchTo(caller);

			*url = TextDatumGetCString(d);
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
			*headers = isnull ? NULL : DatumGetJsonbPCopy(d);
			MemoryContextSwitchTo(spicxt);
		}
	}

	SPI_finish();
	return handler;
}

/*
 * call_handler calls handler(input) as the current user and returns its
 * result; a SQL NULL result becomes JSON null, a NULL input pointer is
 * passed as SQL NULL (a STRICT handler is then not called).  Throws when
 * the handler is gone, has the wrong signature, may not be executed by the
 * current user, or raises an error itself.
 */
static Jsonb *
call_handler(Oid handler, Jsonb *input)
{
	LOCAL_FCINFO(fcinfo, 1);
	FmgrInfo	flinfo;
	AclResult	aclresult;
	bool		strict;
	Datum		result;

	strict = check_handler_signature(handler);
	aclresult = allma_proc_aclcheck(handler, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(handler));
	InvokeFunctionExecuteHook(handler);

	if (input == NULL && strict)
		return allma_jsonb_null();

	fmgr_info(handler, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = input ? JsonbPGetDatum(input) : (Datum) 0;
	fcinfo->args[0].isnull = (input == NULL);
	result = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		return allma_jsonb_null();
	return DatumGetJsonbP(result);
}

/*
 * allma_binding_invoke calls a module's handler (see call_handler) and
 * throws what it throws, a cancel by the step's timeout rewritten
 * (allma_sql_rethrow_step_error).
 */
Jsonb *
allma_binding_invoke(Oid handler, Jsonb *input)
{
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *result = NULL;

	PG_TRY();
	{
		result = call_handler(handler, input);
	}
	PG_CATCH();
	{
		allma_sql_rethrow_step_error(cxt);
	}
	PG_END_TRY();

	return result;
}

/* ----------------------------------------------------------------
 * The definition check
 * ----------------------------------------------------------------
 */

/* CUSTOM_LAMBDA_INVOKE: a Lambda ARN template or a bound module */
void
allma_check_custom_lambda(AllmaChecker *ck, JsonbContainer *step)
{
	char	   *arn = allma_def_get_template_string(ck, step, NULL,
													"lambdaFunctionArnTemplate", false);
	JsonbValue	v;

	if (arn == NULL && !ck->inherits && !allma_def_lookup(step, "moduleIdentifier", &v))
		allma_def_error_missing(ck, "lambdaFunctionArnTemplate",
								"Steps of type CUSTOM_LAMBDA_INVOKE need lambdaFunctionArnTemplate or moduleIdentifier.");
	allma_def_check_string_record(ck, step, NULL, "payloadTemplate");
}
