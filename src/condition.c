/*-------------------------------------------------------------------------
 *
 * condition.c
 *	  Transition conditions.
 *
 * PLACEHOLDER: replaced by the real implementation.
 *
 * IDENTIFICATION
 *	  src/condition.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "condition.h"
PG_FUNCTION_INFO_V1(allma_eval_condition);
Datum allma_eval_condition(PG_FUNCTION_ARGS) { elog(ERROR, "placeholder"); PG_RETURN_NULL(); }
bool allma_condition_check(const char *cond, char **errmsg) { return true; }
bool allma_condition_eval(const char *cond, Jsonb *doc) { return false; }
