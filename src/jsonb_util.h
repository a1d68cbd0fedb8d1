/*-------------------------------------------------------------------------
 *
 * jsonb_util.h
 *	  Small helpers over PostgreSQL's jsonb API used throughout allma.
 *
 * Every function allocates its result in CurrentMemoryContext.  A "Jsonb *"
 * may hold a scalar (PostgreSQL's raw-scalar form), an object or an array.
 * A NULL "Jsonb *" means "absent" (JavaScript's undefined), which is not the
 * same as a JSON null.
 *
 * IDENTIFICATION
 *	  src/jsonb_util.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_JSONB_UTIL_H
#define ALLMA_JSONB_UTIL_H

#include "allma.h"

#include "nodes/pg_list.h"

/* construction */
extern Jsonb *allma_jsonb_parse(const char *json);
extern Jsonb *allma_jsonb_from_value(JsonbValue *v);
extern Jsonb *allma_jsonb_empty_object(void);
extern Jsonb *allma_jsonb_empty_array(void);
extern Jsonb *allma_jsonb_string(const char *s);
extern Jsonb *allma_jsonb_string_len(const char *s, int len);
extern Jsonb *allma_jsonb_number(double d);
extern Jsonb *allma_jsonb_int(int64 i);
extern Jsonb *allma_jsonb_bool(bool b);
extern Jsonb *allma_jsonb_null(void);

/* inspection */
extern char *allma_jsonb_to_cstring(Jsonb *jb);
extern bool allma_jsonb_is_object(Jsonb *jb);
extern bool allma_jsonb_is_array(Jsonb *jb);
extern bool allma_jsonb_is_scalar(Jsonb *jb);
extern bool allma_jsonb_scalar(Jsonb *jb, JsonbValue *out);
extern bool allma_jsonb_truthy(Jsonb *jb);
extern int	allma_jsonb_array_length(Jsonb *jb);
extern Jsonb *allma_jsonb_array_element(Jsonb *jb, int index);
extern char *allma_jsonb_to_display_text(Jsonb *jb);

/* object access; all return NULL / false when obj is not an object */
extern Jsonb *allma_jsonb_get(Jsonb *obj, const char *key);
extern char *allma_jsonb_get_cstring(Jsonb *obj, const char *key);
extern bool allma_jsonb_get_number(Jsonb *obj, const char *key, double *out);
extern bool allma_jsonb_get_bool(Jsonb *obj, const char *key, bool *out);
extern bool allma_jsonb_has_key(Jsonb *obj, const char *key);

/* modification: all return a new value */
extern Jsonb *allma_jsonb_set_key(Jsonb *obj, const char *key, Jsonb *value);
extern Jsonb *allma_jsonb_delete_key(Jsonb *obj, const char *key);
extern Jsonb *allma_jsonb_concat(Jsonb *a, Jsonb *b);
extern Jsonb *allma_jsonb_merge3(Jsonb *a, Jsonb *b, Jsonb *c);
extern Jsonb *allma_jsonb_array_append(Jsonb *arr, Jsonb *value);

/* building: push a whole document as an array element or object value */
extern void allma_jsonb_push(JsonbParseState **state, JsonbIteratorToken seq,
							 Jsonb *value);

/* iteration over an object's keys / an array's elements */
typedef void (*allma_jsonb_object_cb) (const char *key, Jsonb *value, void *arg);
extern void allma_jsonb_foreach_key(Jsonb *obj, allma_jsonb_object_cb cb, void *arg);
extern List *allma_jsonb_object_keys(Jsonb *obj);
extern List *allma_jsonb_array_elements(Jsonb *arr);

#endif							/* ALLMA_JSONB_UTIL_H */
