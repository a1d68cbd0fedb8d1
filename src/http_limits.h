/*-------------------------------------------------------------------------
 *
 * http_limits.h
 *	  What one worker's HTTP client may hold (http_limits.c).
 *
 * IDENTIFICATION
 *	  src/http_limits.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_HTTP_LIMITS_H
#define ALLMA_HTTP_LIMITS_H

#include "http.h"

/* raise the soft open-files limit to the hard one (sockets in flight) */
extern void allma_http_raise_fd_limit(void);

/*
 * the HTTP client limits the GUCs ask for; in flight at most as many
 * requests as the worker may open sockets (said once in the log)
 */
extern void allma_http_limits_from_gucs(AllmaHttpLimits *limits);

#endif							/* ALLMA_HTTP_LIMITS_H */
