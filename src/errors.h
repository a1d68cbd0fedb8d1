/*-------------------------------------------------------------------------
 *
 * errors.h
 *	  Allma error objects: building them, and naming PostgreSQL errors.
 *
 * An Allma error is a jsonb object
 *	  {errorName, errorMessage, errorDetails, isRetryable}
 * stored in step history, execution rows and flow contexts.
 *
 * IDENTIFICATION
 *	  src/errors.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_ERRORS_H
#define ALLMA_ERRORS_H

#include "allma.h"

extern Jsonb *allma_error_make(const char *name, const char *message,
							   Jsonb *details);
extern Jsonb *allma_error_from_edata(ErrorData *edata, const char *default_name,
									 const char *step_id);
extern char *allma_error_name(Jsonb *error);
extern bool allma_error_name_is_retryable(const char *name);

#endif							/* ALLMA_ERRORS_H */
