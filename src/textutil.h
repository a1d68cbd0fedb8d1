/*-------------------------------------------------------------------------
 *
 * textutil.h
 *	  Small text helpers shared by allma's parsers and message builders.
 *
 * IDENTIFICATION
 *	  src/textutil.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_TEXTUTIL_H
#define ALLMA_TEXTUTIL_H

#include "postgres.h"

#include <stdarg.h>

#include "lib/stringinfo.h"

/*
 * allma_append_vformat appends fmt formatted with args to buf, enlarging
 * it as needed (appendStringInfoVA, retried until everything fits).  For
 * the printf-like functions of the parsers:
 *
 *	  va_start(args, fmt);
 *	  allma_append_vformat(&buf, fmt, args);
 *	  va_end(args);
 */
extern void allma_append_vformat(StringInfo buf, const char *fmt, va_list args)
			pg_attribute_printf(2, 0);

#endif							/* ALLMA_TEXTUTIL_H */
