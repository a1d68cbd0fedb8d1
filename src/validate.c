/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Definition validation.
 *
 * PLACEHOLDER: replaced by the real implementation.
 *
 * IDENTIFICATION
 *	  src/validate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "validate.h"
PG_FUNCTION_INFO_V1(allma_validate_flow);
Datum allma_validate_flow(PG_FUNCTION_ARGS) { allma_validate_definition(PG_GETARG_JSONB_P(0)); PG_RETURN_VOID(); }
void allma_validate_definition(Jsonb *definition) { }
bool allma_step_type_known(const char *t) { return true; }
