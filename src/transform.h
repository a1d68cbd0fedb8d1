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

#endif							/* ALLMA_TRANSFORM_H */
