/*-------------------------------------------------------------------------
 *
 * condition.h
 *	  Transition and branch conditions: Allma's expression language, and
 *	  PostgreSQL jsonpath predicates.
 *
 * IDENTIFICATION
 *	  src/condition.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_CONDITION_H
#define ALLMA_CONDITION_H

#include "allma.h"

/* true when "cond" parses; else false with *errmsg (palloc'd).  Never throws. */
extern bool allma_condition_check(const char *cond, char **errmsg);

/* evaluates "cond" over "doc"; throws ERRCODE_ALLMA_INVALID_CONDITION if it does not parse */
extern bool allma_condition_eval(const char *cond, Jsonb *doc);

#endif							/* ALLMA_CONDITION_H */
