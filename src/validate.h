/*-------------------------------------------------------------------------
 *
 * validate.h
 *	  Validation of flow definitions before they are stored.
 *
 * IDENTIFICATION
 *	  src/validate.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_VALIDATE_H
#define ALLMA_VALIDATE_H

#include "allma.h"

/*
 * allma_validate_definition throws on the first problem, with an LM1xx
 * SQLSTATE and a message naming the step and the field.  Returns normally
 * when the definition can be stored and run.
 */
extern void allma_validate_definition(Jsonb *definition);

/* true when stepType is one allma knows (whether or not it runs it yet) */
extern bool allma_step_type_known(const char *step_type);

#endif							/* ALLMA_VALIDATE_H */
