/*-------------------------------------------------------------------------
 *
 * allma.h
 *	  Shared declarations of the allma extension: configuration variables,
 *	  the extension's own SQLSTATEs, and Allma's error names.
 *
 * Every other header of the extension includes this one.  It owns nothing
 * but declarations; the GUC variables are defined in allma.c.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/allma.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_H
#define ALLMA_H

#include "postgres.h"

#include "utils/jsonb.h"

/*
 * ALLMA_VERSION is this library's release, ALLMA_SCHEMA_VERSION the version
 * of the extension's SQL objects (pg_extension.extversion) it runs against:
 * the workers stay idle until the installed extension is at that version
 * (see worker.c).  The Makefile sets both from allma.control's
 * default_version, the one place where a new version is declared.
 */
#ifndef ALLMA_VERSION
#define ALLMA_VERSION "unknown"
#endif
#ifndef ALLMA_SCHEMA_VERSION
#error "ALLMA_SCHEMA_VERSION must be set by the build (allma.control's default_version)"
#endif

#define ALLMA_SCHEMA "allma"
#define ALLMA_EXTENSION_NAME "allma"
#define ALLMA_NOTIFY_CHANNEL "allma_execution_events"

/* Upper bound on allma.max_workers (size of the shared worker table). */
#define ALLMA_MAX_WORKERS 32

/*
 * SQLSTATEs of allma.  Class "LM" is ours (classes starting with a letter
 * from I to Z are free for implementations).  Definition errors are LM1xx,
 * runtime step errors raised by users' code to pick an Allma error name are
 * LM2xx, API errors are LM3xx.
 */
#define ERRCODE_ALLMA_INVALID_DEFINITION	MAKE_SQLSTATE('L','M','1','0','0')
#define ERRCODE_ALLMA_UNKNOWN_STEP_TYPE		MAKE_SQLSTATE('L','M','1','0','1')
#define ERRCODE_ALLMA_DANGLING_REFERENCE	MAKE_SQLSTATE('L','M','1','0','2')
#define ERRCODE_ALLMA_INVALID_PATH			MAKE_SQLSTATE('L','M','1','0','3')
#define ERRCODE_ALLMA_INVALID_CONDITION		MAKE_SQLSTATE('L','M','1','0','4')
#define ERRCODE_ALLMA_INVALID_TEMPLATE		MAKE_SQLSTATE('L','M','1','0','5')
#define ERRCODE_ALLMA_INVALID_RETRY			MAKE_SQLSTATE('L','M','1','0','6')
#define ERRCODE_ALLMA_STEP_KEY_MISMATCH		MAKE_SQLSTATE('L','M','1','0','7')
#define ERRCODE_ALLMA_INVALID_FIELD_TYPE	MAKE_SQLSTATE('L','M','1','0','8')
#define ERRCODE_ALLMA_UNKNOWN_MODULE		MAKE_SQLSTATE('L','M','1','0','9')

#define ERRCODE_ALLMA_PERMANENT_STEP_ERROR	MAKE_SQLSTATE('L','M','2','0','0')
#define ERRCODE_ALLMA_TRANSIENT_STEP_ERROR	MAKE_SQLSTATE('L','M','2','0','1')
#define ERRCODE_ALLMA_RETRYABLE_STEP_ERROR	MAKE_SQLSTATE('L','M','2','0','2')
#define ERRCODE_ALLMA_CONTENT_ERROR			MAKE_SQLSTATE('L','M','2','0','3')
/* the AWS data modules' errors, named as DynamoDB and S3 name them (src/modules/aws.c) */
#define ERRCODE_ALLMA_CONDITIONAL_CHECK_FAILED	MAKE_SQLSTATE('L','M','2','1','0')
#define ERRCODE_ALLMA_VALIDATION_EXCEPTION	MAKE_SQLSTATE('L','M','2','1','1')
#define ERRCODE_ALLMA_RESOURCE_NOT_FOUND	MAKE_SQLSTATE('L','M','2','1','2')
#define ERRCODE_ALLMA_NO_SUCH_KEY			MAKE_SQLSTATE('L','M','2','1','3')
#define ERRCODE_ALLMA_NO_SUCH_BUCKET		MAKE_SQLSTATE('L','M','2','1','4')

#define ERRCODE_ALLMA_UNKNOWN_FLOW			MAKE_SQLSTATE('L','M','3','0','0')
#define ERRCODE_ALLMA_NOT_PUBLISHED			MAKE_SQLSTATE('L','M','3','0','1')
#define ERRCODE_ALLMA_UNKNOWN_VERSION		MAKE_SQLSTATE('L','M','3','0','2')
#define ERRCODE_ALLMA_INVALID_OPTION		MAKE_SQLSTATE('L','M','3','0','3')
#define ERRCODE_ALLMA_EXECUTION_CONFLICT	MAKE_SQLSTATE('L','M','3','0','4')

/*
 * Allma's error names: the "errorName" of an error object, which retry
 * policies and catch rules match on.
 */
#define ALLMA_ERR_PERMANENT		"PermanentStepError"
#define ALLMA_ERR_TRANSIENT		"TransientStepError"
#define ALLMA_ERR_RETRYABLE		"RetryableStepError"
#define ALLMA_ERR_CONTENT		"ContentBasedRetryableError"
#define ALLMA_ERR_JSON_PARSE	"JsonParseError"
#define ALLMA_ERR_CONFIG		"ConfigurationError"
#define ALLMA_ERR_PARALLEL		"ParallelBranchExecutionError"
#define ALLMA_ERR_DATA_PATH		"DataPathError"

/* GUC variables, defined in allma.c */
extern char *allma_database_name;
extern int	allma_max_workers;
extern int	allma_batch_size;
extern int	allma_max_concurrent_passes;
extern int	allma_pass_stall_ms;
extern int	allma_max_chain_steps;
extern int	allma_naptime_ms;
extern double allma_timer_scale;
extern int	allma_max_context_bytes;
extern int	allma_max_fork_branches;
extern int	allma_sql_step_timeout_ms;
extern char *allma_http_allowlist;
extern int	allma_http_max_in_flight;
extern int	allma_http_max_per_host;
extern int	allma_http_timeout_ms;
extern int	allma_http_connect_timeout_ms;
extern int	allma_http_max_response_bytes;
extern int	allma_file_download_max_bytes;
extern int	allma_object_max_bytes;
extern char *allma_openai_base_url;
extern char *allma_anthropic_base_url;
extern char *allma_gemini_base_url;
extern char *allma_smtp_url;
extern char *allma_smtp_username;
extern char *allma_smtp_password_secret;
extern bool allma_allow_superuser_sql_steps;

#endif							/* ALLMA_H */
