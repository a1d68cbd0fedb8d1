/*-------------------------------------------------------------------------
 *
 * sqlstep.c
 *	  SQL steps and module bindings.
 *
 * PLACEHOLDER: replaced by the real implementation.
 *
 * IDENTIFICATION
 *	  src/sqlstep.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "sqlstep.h"
Jsonb *allma_sqlstep_run(Jsonb *config, Jsonb *ctx, bool returns_rows) { elog(ERROR, "placeholder"); return NULL; }
Oid allma_binding_lookup(const char *key) { return InvalidOid; }
Jsonb *allma_binding_invoke(Oid handler, Jsonb *input) { elog(ERROR, "placeholder"); return NULL; }
