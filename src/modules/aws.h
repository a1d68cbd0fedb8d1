/*-------------------------------------------------------------------------
 *
 * aws.h
 *	  Allma's AWS data modules (system/dynamodb-*, system/s3-*) run on
 *	  PostgreSQL: what the engine and the SQL API call.
 *
 * A module gets one jsonb object, the step's rendered customConfig with
 * the step input merged over it, and returns the step output.  It runs in
 * the caller's transaction as the current user (a step switches to the
 * execution's starter before calling), so PostgreSQL's privileges on the
 * item stores and buckets decide what it may read and write.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/modules/aws.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_AWS_H
#define ALLMA_AWS_H

#include "allma.h"

#include "utils/uuid.h"

/* true when "module" is one of the built-in DynamoDB or S3 modules */
extern bool allma_aws_module_exists(const char *module);

/*
 * allma_aws_module_run runs the module on input and returns its output.
 *
 * "unrendered" is the same input before template rendering (customConfig
 * as written, merged with the step input): QUERY_BATCH takes its target
 * paths (outputJsonPath) from there, since rendering replaces a string
 * that is a whole "$.path" by the value at that path.  It may be the
 * input itself.
 *
 * When context_writes is not NULL it receives NULL or an array of
 * [jsonPath, value] pairs the step must write into the flow's context
 * after its output mappings (QUERY_BATCH's results); when it is NULL (the
 * SQL function) those results are only in the output.
 */
extern Jsonb *allma_aws_module_run(const char *module, Jsonb *input, Jsonb *unrendered,
								   Jsonb **context_writes);

/* the Allma error name of one of the modules' SQLSTATEs, or NULL */
extern const char *allma_aws_error_name(int sqlerrcode);

/*
 * allma_object_read reads the bytes a pointer names:
 *	 {"fileId": uuid} or {"filePointer": {"fileId": uuid}}: a file the
 *		execution stored with FILE_DOWNLOAD (allma.files);
 *	 "s3://bucket/key", {"bucket", "key"} or {"_s3_output_pointer": {...}}:
 *		an object of a bucket (system/s3-data-saver's store).
 * Files are looked up within execution_id (when not NULL); objects are
 * read as the role "as_role" (InvalidOid: the current user), so its
 * privileges on the bucket apply.  Returns the content and sets
 * *content_type (never NULL).  A missing file or object is an error.
 */
extern bytea *allma_object_read(Jsonb *pointer, const pg_uuid_t *execution_id,
								Oid as_role, char **content_type);

/* For the module files: a field of a module input, NULL when absent or JSON null */
extern Jsonb *allma_aws_input_field(Jsonb *input, const char *name);

/* For the module files: a copy of jb in cxt (outliving an SPI connection) */
extern Jsonb *allma_aws_copy_jsonb(Jsonb *jb, MemoryContext cxt);

#endif							/* ALLMA_AWS_H */
