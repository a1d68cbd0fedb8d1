/*-------------------------------------------------------------------------
 *
 * transform.c
 *	  Built-in transformation modules.
 *
 * PLACEHOLDER: replaced by the real implementation.
 *
 * IDENTIFICATION
 *	  src/transform.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "transform.h"
PG_FUNCTION_INFO_V1(allma_run_module);
Datum allma_run_module(PG_FUNCTION_ARGS) { elog(ERROR, "placeholder"); PG_RETURN_NULL(); }
bool allma_transform_exists(const char *m) { return false; }
Jsonb *allma_transform_run(const char *m, Jsonb *input) { return input; }
