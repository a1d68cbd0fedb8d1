/*-------------------------------------------------------------------------
 *
 * aws_modules.c
 *	  The AWS data modules (src/modules/: system/dynamodb-*, system/s3-*)
 *	  as a family of built-in modules of DATA_LOAD and DATA_SAVE steps.
 *
 * A module runs as the role that started the execution, in a
 * security-restricted operation, like a SQL step: PostgreSQL's privileges
 * on the item stores and buckets decide what it may touch.  A binding of
 * the same identifier (allma_bind_module*) wins over the built-in, so that
 * installations that emulated these modules with their own functions keep
 * them.  QUERY_BATCH writes results into the context at paths it takes
 * from the unrendered configuration (rendering would replace a "$.path"
 * string by the value it names): StepRun.context_writes.
 *
 * IDENTIFICATION
 *	  src/steps/aws_modules.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "jsonb_util.h"
#include "modules/aws.h"
#include "modules/dynamodb.h"
#include "modules/s3.h"
#include "steps.h"

static Jsonb *
run_aws_module(StepRun *run, Jsonb *input)
{
	const char *module = run->step->module;
	AllmaUserCodeState st;
	Jsonb	   *cfg = run->step->custom_config;
	Jsonb	   *unrendered = run->input ? run->input : allma_jsonb_empty_object();
	Jsonb	   *result;

	if (allma_module_is_bound(module))
		return allma_module_invoke_binding(run, module, input);
	if (allma_jsonb_is_object(cfg))
		unrendered = allma_jsonb_concat(cfg, unrendered);
	allma_step_enter_user_code(run, &st);
	result = allma_aws_module_run(module, input, unrendered, &run->context_writes);
	allma_step_leave_user_code(&st);
	return result;
}

const AllmaBuiltinModule allma_aws_modules[] = {
	{DDB_MODULE_DATA_LOADER, ALLMA_MODULES_DATA, false, NULL, run_aws_module, NULL},
	{DDB_MODULE_UPDATE_ITEM, ALLMA_MODULES_DATA, false, NULL, run_aws_module, NULL},
	{DDB_MODULE_QUERY_AND_UPDATE, ALLMA_MODULES_DATA, false, NULL, run_aws_module, NULL},
	{DDB_MODULE_BATCH_WRITER, ALLMA_MODULES_DATA, false, NULL, run_aws_module, NULL},
	{S3_MODULE_LOADER, ALLMA_MODULES_DATA, false, NULL, run_aws_module, NULL},
	{S3_MODULE_SAVER, ALLMA_MODULES_DATA, false, NULL, run_aws_module, NULL},
	{S3_MODULE_LIST, ALLMA_MODULES_DATA, false, NULL, run_aws_module, NULL},
	{NULL}
};
