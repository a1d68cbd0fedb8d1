/*-------------------------------------------------------------------------
 *
 * transform.h
 *	  Allma's built-in DATA_TRANSFORMATION system modules.
 *
 * IDENTIFICATION
 *	  src/transform.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_TRANSFORM_H
#define ALLMA_TRANSFORM_H

#include "allma.h"

/* true for "system/compose-object-from-input" and the other built-ins */
extern bool allma_transform_exists(const char *module_identifier);

/*
 * allma_transform_run runs a built-in module.  "input" is the module's
 * input: the rendered customConfig with the step input merged over it.
 * Bad input throws with ERRCODE_INVALID_PARAMETER_VALUE (the engine turns
 * that into a PermanentStepError).
 */
extern Jsonb *allma_transform_run(const char *module_identifier, Jsonb *input);

/* system/join-data (join.c) */
extern Jsonb *allma_transform_join_data(const char *module, Jsonb *input);

/*
 * Helpers for modules' input (transform.c).  Every error is
 * ERRCODE_INVALID_PARAMETER_VALUE with a message that starts with the
 * module identifier and names the field; an optional field given as JSON
 * null counts as absent.
 */
extern void allma_transform_missing_field(const char *module,
										  const char *field) pg_attribute_noreturn();
extern void allma_transform_bad_field(const char *module, const char *field,
									  const char *what) pg_attribute_noreturn();
/* the value of "field", or NULL when absent or JSON null */
extern Jsonb *allma_transform_get_optional(Jsonb *input, const char *field);
/* the array at "field"; throws when absent or not an array */
extern Jsonb *allma_transform_get_array(const char *module, Jsonb *input,
										const char *field);
/*
 * the index in "choices" (NULL-terminated) of the string at "field"; dflt
 * when absent (dflt < 0: required)
 */
extern int	allma_transform_get_choice(const char *module, Jsonb *input, const char *field,
									   const char *const *choices, int dflt);
/* the one-key object {key: value} */
extern Jsonb *allma_transform_result_object(const char *key, Jsonb *value);
/* pushes v as the current array element or object value of a parse state */
extern void allma_transform_push_value(JsonbParseState **state, JsonbIteratorToken seq,
									   JsonbValue *v);

#endif							/* ALLMA_TRANSFORM_H */
