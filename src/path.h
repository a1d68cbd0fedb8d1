/*-------------------------------------------------------------------------
 *
 * path.h
 *	  Allma's JSONPaths and dot paths, evaluated with PostgreSQL's jsonpath.
 *
 * Allma flows use jsonpath-plus syntax ("$.a.b[0]", "$['k']", "$..x",
 * "$.a[*]", "$.a[?(@.x > 1)]", "$.a[-1:]").  allma translates each path
 * once into PostgreSQL's jsonpath language and lets the core engine
 * evaluate it; simple paths (keys and indexes only) take a direct walk.
 * Dot paths ("a.b[0].c") name places in a step input (inputMappings keys,
 * literals keys).
 *
 * IDENTIFICATION
 *	  src/path.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_PATH_H
#define ALLMA_PATH_H

#include "allma.h"

#include "utils/jsonpath.h"

/*
 * allma_path_check returns true when "path" is a valid Allma JSONPath; else
 * false with *errmsg (palloc'd, may be NULL) saying why.  Never throws.
 */
extern bool allma_path_check(const char *path, char **errmsg);

/*
 * allma_path_check_settable: like allma_path_check, but also requires a
 * path made only of keys and indexes (usable as an assignment target).
 */
extern bool allma_path_check_settable(const char *path, char **errmsg);

/* allma_path_to_pg translates to PostgreSQL jsonpath text; NULL + *errmsg on error */
extern char *allma_path_to_pg(const char *path, char **errmsg);

/*
 * allma_path_get evaluates "path" over "doc" with jsonpath-plus' wrap:false
 * semantics: no match gives NULL, one match gives that value, several
 * matches give an array of them.  "$" gives doc.  Throws
 * ERRCODE_ALLMA_INVALID_PATH on a bad path.
 */
extern Jsonb *allma_path_get(Jsonb *doc, const char *path);

/*
 * allma_path_get_keep_refs: like allma_path_get (which, while a path runs,
 * walks through pointers to out-of-line values and returns what it selects
 * in full), but a selected value that is itself such a pointer is returned
 * as the pointer, for copying it (outputMappings) without reading it.
 */
extern Jsonb *allma_path_get_keep_refs(Jsonb *doc, const char *path);

/*
 * allma_path_set returns doc with the value at the settable "path"
 * replaced, creating missing intermediate objects (or arrays, for numeric
 * segments).  "$" replaces the whole document.  doc may be NULL ({}).
 */
extern Jsonb *allma_path_set(Jsonb *doc, const char *path, Jsonb *value);

/* dot paths: "a.b[0].c", "a['x y']" */
extern bool allma_dotpath_check(const char *dotpath, char **errmsg);
extern Jsonb *allma_dotpath_set(Jsonb *doc, const char *dotpath, Jsonb *value);

/*
 * Helpers shared with condition.c.  allma_jsonpath_parse compiles
 * PostgreSQL jsonpath text, returning NULL + *errmsg on a syntax error
 * instead of throwing.  allma_js_string_literal decodes the JavaScript
 * string literal starting at s (s[0] is a quote), setting *consumed to
 * the bytes read; NULL + *errmsg when it is malformed.
 */
extern JsonPath *allma_jsonpath_parse(const char *text, char **errmsg);
extern char *allma_js_string_literal(const char *s, int *consumed, char **errmsg);

#endif							/* ALLMA_PATH_H */
