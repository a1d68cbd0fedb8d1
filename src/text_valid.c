/*-------------------------------------------------------------------------
 *
 * text_valid.c
 *	  Making bytes from outside (HTTP bodies, headers, LLM replies) valid
 *	  text in the database encoding before they become text or jsonb.
 *
 * PostgreSQL trusts that text and jsonb values hold valid characters of
 * the database encoding and no NUL: the protocol checks what clients send,
 * but a server's response reaches a worker through libcurl, unchecked.  A
 * jsonb string with invalid UTF-8 breaks pg_dump/restore of the history,
 * and a NUL silently truncates the value.  So every byte sequence that is
 * not a valid character, and every NUL, is replaced: by U+FFFD in a UTF8
 * database (what browsers and most HTTP clients do with undecodable
 * bytes), by "?" in any other encoding.  Steps keep working with the rest
 * of the text; docs/limits.md says which responses this covers.
 *
 * IDENTIFICATION
 *	  src/text_valid.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "text_valid.h"

/* U+FFFD in UTF-8 */
static const char replacement_utf8[] = "\xEF\xBF\xBD";

/* the length of the valid character at p (at most len bytes), or -1 */
static int
valid_char_len(int encoding, const char *p, size_t len)
{
	if (*p == '\0')
		return -1;
	if (!IS_HIGHBIT_SET(*p))
		return 1;
	return pg_encoding_verifymbchar(encoding, p, (int) Min(len, (size_t) INT_MAX));
}

char *
allma_text_make_valid(const char *s, size_t len, size_t *outlen, int *nreplaced)
{
	int			encoding = GetDatabaseEncoding();
	StringInfoData buf;
	size_t		i = 0;
	int			n = 0;

	if (nreplaced)
		*nreplaced = 0;
	/* the usual case: valid already */
	if (len <= (size_t) INT_MAX && memchr(s, '\0', len) == NULL &&
		pg_verify_mbstr(encoding, s, (int) len, true))
	{
		*outlen = len;
		return (char *) s;
	}

	initStringInfo(&buf);
	while (i < len)
	{
		int			l = valid_char_len(encoding, s + i, len - i);

		if (l > 0)
		{
			appendBinaryStringInfo(&buf, s + i, l);
			i += l;
			continue;
		}
		if (encoding == PG_UTF8)
			appendBinaryStringInfo(&buf, replacement_utf8, 3);
		else
			appendStringInfoChar(&buf, '?');
		n++;
		i++;
	}
	if (nreplaced)
		*nreplaced = n;
	*outlen = buf.len;
	return buf.data;
}

char *
allma_cstring_make_valid(const char *s)
{
	size_t		len;

	return s ? allma_text_make_valid(s, strlen(s), &len, NULL) : NULL;
}
