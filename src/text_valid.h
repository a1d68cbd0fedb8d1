/*-------------------------------------------------------------------------
 *
 * text_valid.h
 *	  Making bytes from outside (HTTP bodies, headers, LLM replies) valid
 *	  text in the database encoding before they become text or jsonb.
 *
 * IDENTIFICATION
 *	  src/text_valid.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_TEXT_VALID_H
#define ALLMA_TEXT_VALID_H

#include "postgres.h"

/*
 * allma_text_make_valid: s (len bytes, NULs allowed) as valid text in the
 * database encoding without NULs: every NUL byte and every byte that does
 * not start a valid character becomes U+FFFD (the replacement character)
 * in a UTF8 database, "?" in any other.  Returns s itself when it is valid
 * already (*outlen = len), else a palloc'd copy; the result is always
 * NUL-terminated at (*outlen) when a copy is made, and s must be when not.
 * *nreplaced (optional) counts the replacements.  Never throws except on
 * out-of-memory.
 */
extern char *allma_text_make_valid(const char *s, size_t len, size_t *outlen,
								   int *nreplaced);

/* allma_cstring_make_valid: the same for a NUL-terminated string */
extern char *allma_cstring_make_valid(const char *s);

#endif							/* ALLMA_TEXT_VALID_H */
