/*-------------------------------------------------------------------------
 *
 * textutil.c
 *	  Small text helpers shared by allma's parsers and message builders
 *	  (see textutil.h).
 *
 * IDENTIFICATION
 *	  src/textutil.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "textutil.h"

void
allma_append_vformat(StringInfo buf, const char *fmt, va_list args)
{
	for (;;)
	{
		va_list		copy;
		int			needed;

		/* each attempt consumes its own copy of the arguments */
		va_copy(copy, args);
		needed = appendStringInfoVA(buf, fmt, copy);
		va_end(copy);
		if (needed == 0)
			break;
		enlargeStringInfo(buf, needed);
	}
}
