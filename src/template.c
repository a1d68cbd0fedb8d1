/*-------------------------------------------------------------------------
 *
 * template.c
 *	  Templates.
 *
 * PLACEHOLDER: replaced by the real implementation.
 *
 * IDENTIFICATION
 *	  src/template.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "template.h"
PG_FUNCTION_INFO_V1(allma_render_template);
Datum allma_render_template(PG_FUNCTION_ARGS) { elog(ERROR, "placeholder"); PG_RETURN_NULL(); }
bool allma_template_has_markup(const char *s) { return strstr(s, "{{") != NULL; }
bool allma_template_check(const char *tmpl, char **errmsg) { return true; }
char *allma_template_render(const char *tmpl, Jsonb *ctx) { return pstrdup(tmpl); }
Jsonb *allma_template_render_value(Jsonb *value, Jsonb *ctx) { return value; }
