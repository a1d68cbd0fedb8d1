/*-------------------------------------------------------------------------
 *
 * aws.c
 *	  The table of Allma's AWS data modules that allma runs itself, and
 *	  the Allma error names of their errors.
 *
 * DATA_LOAD and DATA_SAVE steps naming one of these modules run it here
 * (unless the identifier is bound to a handler with allma_bind_module,
 * which keeps working as in 1.0); other AWS modules (system/sqs-*,
 * system/sns-*, system/jsonata-transformer, ...) are left to bindings.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/modules/aws.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "jsonb_util.h"
#include "modules/aws.h"
#include "modules/dynamodb.h"
#include "modules/s3.h"

typedef enum AwsService
{
	AWS_DYNAMODB,
	AWS_S3
} AwsService;

typedef struct AwsModule
{
	const char *identifier;
	AwsService	service;
} AwsModule;

static const AwsModule aws_modules[] = {
	{DDB_MODULE_DATA_LOADER, AWS_DYNAMODB},
	{DDB_MODULE_UPDATE_ITEM, AWS_DYNAMODB},
	{DDB_MODULE_QUERY_AND_UPDATE, AWS_DYNAMODB},
	{DDB_MODULE_BATCH_WRITER, AWS_DYNAMODB},
	{S3_MODULE_LOADER, AWS_S3},
	{S3_MODULE_SAVER, AWS_S3},
	{S3_MODULE_LIST, AWS_S3},
};

static const AwsModule *
find_module(const char *module)
{
	if (module == NULL)
		return NULL;
	for (int i = 0; i < lengthof(aws_modules); i++)
		if (strcmp(aws_modules[i].identifier, module) == 0)
			return &aws_modules[i];
	return NULL;
}

bool
allma_aws_module_exists(const char *module)
{
	return find_module(module) != NULL;
}

Jsonb *
allma_aws_module_run(const char *module, Jsonb *input, Jsonb *unrendered,
					 Jsonb **context_writes)
{
	const AwsModule *m = find_module(module);

	if (context_writes != NULL)
		*context_writes = NULL;
	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_UNKNOWN_MODULE),
				 errmsg("unknown AWS data module \"%s\"", module)));
	if (m->service == AWS_DYNAMODB)
		return ddb_module_run(m->identifier, input, unrendered ? unrendered : input, context_writes);
	return s3_module_run(m->identifier, input);
}

const char *
allma_aws_error_name(int sqlerrcode)
{
	switch (sqlerrcode)
	{
		case ERRCODE_ALLMA_CONDITIONAL_CHECK_FAILED:
			return "ConditionalCheckFailedException";
		case ERRCODE_ALLMA_VALIDATION_EXCEPTION:
			return "ValidationException";
		case ERRCODE_ALLMA_RESOURCE_NOT_FOUND:
			return "ResourceNotFoundException";
		case ERRCODE_ALLMA_NO_SUCH_KEY:
			return "NoSuchKey";
		case ERRCODE_ALLMA_NO_SUCH_BUCKET:
			return "NoSuchBucket";
		default:
			return NULL;
	}
}

Jsonb *
allma_aws_input_field(Jsonb *input, const char *name)
{
	Jsonb	   *v = allma_jsonb_get(input, name);
	JsonbValue	sv;

	if (v == NULL || (allma_jsonb_scalar(v, &sv) && sv.type == jbvNull))
		return NULL;
	return v;
}

Jsonb *
allma_aws_copy_jsonb(Jsonb *jb, MemoryContext cxt)
{
	Jsonb	   *copy = MemoryContextAlloc(cxt, VARSIZE(jb));

	memcpy(copy, jb, VARSIZE(jb));
	return copy;
}
