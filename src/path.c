/*-------------------------------------------------------------------------
 *
 * path.c
 *	  Allma JSONPaths and dot paths.
 *
 * PLACEHOLDER: replaced by the real implementation.
 *
 * IDENTIFICATION
 *	  src/path.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "path.h"
PG_FUNCTION_INFO_V1(allma_path_query);
PG_FUNCTION_INFO_V1(allma_jsonpath);
Datum allma_path_query(PG_FUNCTION_ARGS) { elog(ERROR, "placeholder"); PG_RETURN_NULL(); }
Datum allma_jsonpath(PG_FUNCTION_ARGS) { elog(ERROR, "placeholder"); PG_RETURN_NULL(); }
bool allma_path_check(const char *path, char **errmsg) { return path[0] == 0x24; }
bool allma_path_check_settable(const char *path, char **errmsg) { return path[0] == 0x24; }
char *allma_path_to_pg(const char *path, char **errmsg) { return pstrdup(path); }
Jsonb *allma_path_get(Jsonb *doc, const char *path) { return doc; }
Jsonb *allma_path_set(Jsonb *doc, const char *path, Jsonb *value) { return value; }
bool allma_dotpath_check(const char *dotpath, char **errmsg) { return true; }
Jsonb *allma_dotpath_set(Jsonb *doc, const char *dotpath, Jsonb *value) { return value; }
