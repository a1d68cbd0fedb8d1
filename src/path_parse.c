/*-------------------------------------------------------------------------
 *
 * path_parse.c
 *	  The parser of Allma JSONPaths (jsonpath-plus syntax) and dot paths,
 *	  and the translation of JSONPaths into PostgreSQL's jsonpath language.
 *
 * One recursive-descent parser reads both languages ("$.a.b[0]", "$['k']",
 * "$..x", "$.a[*]", "$.a[?(@.x > 1)]", "$.a[-1:]"; dot paths "a.b[0].c",
 * "a['x y']") into a ParsedPath (path_parse.h): the list of segments when
 * the path is "simple" (keys, indexes and dynamic segments only), and the
 * PostgreSQL jsonpath text it translates into.  Evaluation, assignment and
 * the cache of parsed paths are path.c's.
 *
 * Translation.  jsonpath-plus never unwraps arrays implicitly, its
 * wildcards and filters visit the children of objects and arrays alike,
 * and "$..x" visits each node once, while PostgreSQL's lax mode unwraps
 * arrays (so "lax $.**.x" reports an element of an array twice) and its
 * strict mode aborts the whole query on the first missing key.  The
 * translation therefore runs in strict mode under a leading ".**{0}":
 * inside an any-level accessor the engine ignores structural errors, so a
 * missing key or a type mismatch only drops that one branch, exactly like
 * jsonpath-plus.  Wildcards become ".**{1}" (all children of an object or
 * an array), "..x" becomes ".**.x", filters become ".**{1} ? (...)".
 * Simple paths keep the plain lax form ("$."a"[0]") when shown by
 * allma_jsonpath(); for well-typed documents it selects the same value as
 * the direct walk.  A translated path is compiled with PostgreSQL's
 * jsonpath parser at once, so a path that parses here is known to be
 * evaluable.
 *
 * Filters ("[?(...)]") accept the common subset of JavaScript that flows
 * use: @ and $ paths with keys and indexes, numbers, strings,
 * true/false/null, the comparisons == === != !== < <= > >=, && || ! and
 * parentheses.  A bare path used as a condition tests JavaScript
 * truthiness.  Comparisons follow PostgreSQL's typed rules (a string is
 * never equal to a number), which is the one deliberate difference from
 * JavaScript's loose "==" inside filters.  Anything else is reported as
 * unsupported when the path is checked.
 *
 * The parser never throws for bad input: it records the first error as a
 * full sentence and unwinds.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/path_parse.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonpath.h"

#include "path.h"
#include "path_parse.h"
#include "textutil.h"

/* parser state */
typedef struct PathParser
{
	const char *start;			/* the (trimmed) text */
	const char *p;				/* cursor */
	const char *end;
	bool		is_dot;
	StringInfoData pg;			/* translation after the leading "$" */
	PathSeg    *segs;
	int			nsegs;
	int			maxsegs;
	bool		simple;
	bool		settable;
	bool		dynamic;
	char	   *err;			/* first error, a full sentence */
} PathParser;

/* what a piece of a translated filter is */
typedef enum FilterKind
{
	FK_PRED,					/* a predicate (comparison, &&, !) */
	FK_PRED_OR,					/* a predicate whose top operator is || */
	FK_PATH,					/* an @ or $ path */
	FK_LITERAL					/* a number, string, true, false or null */
} FilterKind;

static bool parse_segments(PathParser *ps);
static char *filter_or(PathParser *ps, FilterKind *kind);


/* ---------------------------------------------------------------------
 * Small text helpers
 * ---------------------------------------------------------------------
 */

/*
 * parse_fail records the first error of a parse, as a full sentence, and
 * returns false so that callers can "return parse_fail(...)".
 */
static bool
parse_fail(PathParser *ps, const char *fmt,...)
pg_attribute_printf(2, 3);

static bool
parse_fail(PathParser *ps, const char *fmt,...)
{
	va_list		args;
	StringInfoData buf;

	if (ps->err != NULL)
		return false;
	initStringInfo(&buf);
	va_start(args, fmt);
	allma_append_vformat(&buf, fmt, args);
	va_end(args);
	ps->err = buf.data;
	return false;
}

/* 1-based character position of the cursor, for messages */
static int
parse_pos(PathParser *ps)
{
	return (int) (ps->p - ps->start) + 1;
}

static void
skip_ws(PathParser *ps)
{
	while (ps->p < ps->end && isspace((unsigned char) *ps->p))
		ps->p++;
}

/* the character under the cursor, or '\0' at the end */
static char
peek(PathParser *ps)
{
	return ps->p < ps->end ? *ps->p : '\0';
}

static char
peek_at(PathParser *ps, int ahead)
{
	return ps->p + ahead < ps->end ? ps->p[ahead] : '\0';
}

/* a short quote of the text at the cursor, for messages */
static char *
near_text(PathParser *ps)
{
	int			len = (int) (ps->end - ps->p);

	if (len == 0)
		return pstrdup("end of path");
	if (len > 20)
		len = 20;
	return psprintf("\"%.*s\"", len, ps->p);
}

/*
 * append_pg_string appends s as a PostgreSQL jsonpath string literal:
 * double quotes, with quote, backslash and control characters escaped.
 */
static void
append_pg_string(StringInfo buf, const char *s, int len)
{
	int			i;

	appendStringInfoChar(buf, '"');
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '"' || c == '\\')
		{
			appendStringInfoChar(buf, '\\');
			appendStringInfoChar(buf, c);
		}
		else if (c < 0x20)
			appendStringInfo(buf, "\\u%04x", c);
		else
			appendStringInfoChar(buf, c);
	}
	appendStringInfoChar(buf, '"');
}

/* appends a Unicode code point as UTF-8 */
static void
append_utf8(StringInfo buf, uint32 cp)
{
	unsigned char tmp[4];

	unicode_to_utf8((pg_wchar) cp, tmp);
	appendBinaryStringInfo(buf, (char *) tmp, pg_utf_mblen(tmp));
}

/* reads n hex digits at s; -1 if they are not all hex digits */
static int
read_hex(const char *s, const char *end, int n)
{
	int			v = 0;
	int			i;

	if (end - s < n)
		return -1;
	for (i = 0; i < n; i++)
	{
		char		c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/*
 * allma_js_string_literal decodes the JavaScript string literal at s (s[0]
 * is ' or ").  Escapes: \\ \' \" \/ \b \f \n \r \t \v, \xHH, \uHHHH
 * (surrogate pairs combine); any other escaped character stands for
 * itself.  Returns the palloc'd text and sets *consumed to the number of
 * bytes read, closing quote included.  NULL + *errmsg on an unterminated
 * literal, a bad escape or a NUL character.  Never throws.
 */
char *
allma_js_string_literal(const char *s, int *consumed, char **errmsg)
{
	StringInfoData buf;
	static const char simple_escapes[] = "bfnrtv";
	static const char simple_values[] = "\b\f\n\r\t\v";
	const char *end = s + strlen(s);
	const char *p = s + 1;
	const char *simple;
	char		quote = s[0];

	initStringInfo(&buf);
	while (p < end && *p != quote)
	{
		if (*p != '\\')
		{
			appendStringInfoChar(&buf, *p++);
			continue;
		}
		p++;
		if (p >= end)
			break;
		if (*p != '\0' && (simple = strchr(simple_escapes, *p)) != NULL)
		{
			/* \b \f \n \r \t \v */
			appendStringInfoChar(&buf, simple_values[simple - simple_escapes]);
			p++;
			continue;
		}
		switch (*p)
		{
			case 'x':
			case 'u':
				{
					int			n = (*p == 'x') ? 2 : 4;
					int			cp = read_hex(p + 1, end, n);

					if (cp < 0)
					{
						if (errmsg)
							*errmsg = psprintf("Invalid \"\\%c\" escape in string literal %s.",
											   *p, s);
						return NULL;
					}
					p += 1 + n;
					if (cp >= 0xD800 && cp <= 0xDBFF && p + 1 < end &&
						p[0] == '\\' && p[1] == 'u')
					{
						int			lo = read_hex(p + 2, end, 4);

						if (lo >= 0xDC00 && lo <= 0xDFFF)
						{
							cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
							p += 6;
						}
					}
					if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
					{
						if (errmsg)
							*errmsg = psprintf("String literal %s contains a NUL character or a lone surrogate.",
											   s);
						return NULL;
					}
					append_utf8(&buf, (uint32) cp);
					break;
				}
			default:
				appendStringInfoChar(&buf, *p++);
				break;
		}
	}
	if (p >= end)
	{
		if (errmsg)
			*errmsg = psprintf("Unterminated string literal %s.", s);
		return NULL;
	}
	*consumed = (int) (p + 1 - s);
	return buf.data;
}

/*
 * allma_jsonpath_parse compiles PostgreSQL jsonpath text.  On a syntax
 * error (or an invalid literal or regular expression) it returns NULL and
 * sets *errmsg to the parser's message.  Other errors (out of memory,
 * cancellation) propagate.  The jsonpath parser holds no resources but
 * memory, so catching its error without a subtransaction is safe.
 */
JsonPath *
allma_jsonpath_parse(const char *text, char **errmsg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	JsonPath   *volatile result = NULL;

	PG_TRY();
	{
		result = DatumGetJsonPathP(DirectFunctionCall1(jsonpath_in,
													   CStringGetDatum(text)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			category;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		category = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
		if (category != ERRCODE_SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION &&
			category != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		if (errmsg)
			*errmsg = pstrdup(edata->message);
		FreeErrorData(edata);
		result = NULL;
	}
	PG_END_TRY();

	return result;
}


/* ---------------------------------------------------------------------
 * Parser
 * ---------------------------------------------------------------------
 */

static void
add_seg(PathParser *ps, PathSegKind kind, int index, const char *text, int len)
{
	PathSeg    *seg;

	if (ps->nsegs == ps->maxsegs)
	{
		ps->maxsegs = ps->maxsegs ? ps->maxsegs * 2 : 8;
		if (ps->segs == NULL)
			ps->segs = palloc(ps->maxsegs * sizeof(PathSeg));
		else
			ps->segs = repalloc(ps->segs, ps->maxsegs * sizeof(PathSeg));
	}
	seg = &ps->segs[ps->nsegs++];
	seg->kind = kind;
	seg->index = index;
	seg->text = text ? pnstrdup(text, len) : NULL;
	seg->len = text ? len : 0;
}

/* emits a key segment; recursive means it follows ".." */
static void
emit_key(PathParser *ps, const char *key, int len, bool recursive)
{
	if (recursive)
	{
		appendStringInfoString(&ps->pg, ".**.");
		ps->simple = false;
	}
	else
	{
		appendStringInfoChar(&ps->pg, '.');
		add_seg(ps, SEG_KEY, 0, key, len);
	}
	append_pg_string(&ps->pg, key, len);
}

/* appends a PostgreSQL subscript for index n (negative: from the end) */
static void
append_subscript(StringInfo buf, int n)
{
	if (n >= 0)
		appendStringInfo(buf, "%d", n);
	else if (n == -1)
		appendStringInfoString(buf, "last");
	else
		appendStringInfo(buf, "last-%d", -n - 1);
}

static void
emit_index(PathParser *ps, int n, bool recursive)
{
	if (recursive)
	{
		appendStringInfoString(&ps->pg, ".**");
		ps->simple = false;
	}
	else
	{
		add_seg(ps, SEG_INDEX, n, NULL, 0);
		if (n < 0)
			ps->settable = false;
	}
	appendStringInfoChar(&ps->pg, '[');
	append_subscript(&ps->pg, n);
	appendStringInfoChar(&ps->pg, ']');
}

/* allma_path_canonical_index: see path_parse.h */
bool
allma_path_canonical_index(const char *s, int len, int *out)
{
	int			i;
	int64		v = 0;

	if (len <= 0 || len > 9 || (len > 1 && s[0] == '0'))
		return false;
	for (i = 0; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v > PATH_MAX_INDEX)
		return false;
	if (out)
		*out = (int) v;
	return true;
}

/*
 * parse_int reads an optionally signed integer at the cursor.  Returns
 * false (without error) when there is no digit; sets an error when the
 * number is too large.
 */
static bool
parse_int(PathParser *ps, int *out, bool *present)
{
	bool		neg = false;
	int64		v = 0;
	const char *save = ps->p;

	*present = false;
	if (peek(ps) == '-' || peek(ps) == '+')
	{
		neg = (peek(ps) == '-');
		ps->p++;
	}
	if (!isdigit((unsigned char) peek(ps)))
	{
		ps->p = save;
		return true;
	}
	while (isdigit((unsigned char) peek(ps)))
	{
		v = v * 10 + (*ps->p++ - '0');
		if (v > PATH_MAX_INDEX)
			return parse_fail(ps, "Index at character %d is too large.",
							  (int) (save - ps->start) + 1);
	}
	*out = neg ? (int) -v : (int) v;
	*present = true;
	return true;
}

static bool
expect_char(PathParser *ps, char c, const char *what)
{
	skip_ws(ps);
	if (peek(ps) != c)
		return parse_fail(ps, "Expected \"%c\" %s at character %d, found %s.",
						  c, what, parse_pos(ps), near_text(ps));
	ps->p++;
	return true;
}

/*
 * parse_quoted reads a quoted string at the cursor into *out and *outlen.
 */
static bool
parse_quoted(PathParser *ps, char **out, int *outlen)
{
	char	   *text = pnstrdup(ps->p, ps->end - ps->p);
	char	   *msg = NULL;
	int			consumed = 0;
	char	   *val;

	val = allma_js_string_literal(text, &consumed, &msg);
	if (val == NULL)
		return parse_fail(ps, "%s", msg);
	ps->p += consumed;
	*out = val;
	*outlen = strlen(val);
	return true;
}

/*
 * check_key rejects keys that are jsonpath-plus features allma does not
 * support (@property selectors, ~ property names, ^ parent, method calls).
 */
static bool
check_key(PathParser *ps, const char *key, int len, int pos)
{
	if (len == 0)
		return parse_fail(ps, "Empty key at character %d.", pos);
	if (memchr(key, '\0', len) != NULL)
		return parse_fail(ps, "Key at character %d contains a NUL character.", pos);
	if (ps->is_dot)
		return true;
	if (key[0] == '@' || key[len - 1] == '~' || key[len - 1] == '^')
		return parse_fail(ps, "The jsonpath-plus selector \"%.*s\" at character %d is not supported.",
						  len, key, pos);
	if (memchr(key, '(', len) != NULL || memchr(key, ')', len) != NULL)
		return parse_fail(ps, "Method calls and script expressions such as \"%.*s\" (character %d) are not supported in Allma JSONPaths.",
						  len, key, pos);
	return true;
}

/*
 * parse_dot_member parses what follows a "." (or starts a dot path): a
 * key, a numeric index or, in JSONPaths, "*".
 */
static bool
parse_dot_member(PathParser *ps, bool recursive)
{
	const char *kstart = ps->p;
	int			pos = parse_pos(ps);
	int			idx;

	if (!ps->is_dot && peek(ps) == '*' &&
		(peek_at(ps, 1) == '\0' || peek_at(ps, 1) == '.' || peek_at(ps, 1) == '['))
	{
		ps->p++;
		appendStringInfoString(&ps->pg, recursive ? ".**{1 to last}" : ".**{1}");
		ps->simple = false;
		return true;
	}
	while (ps->p < ps->end && *ps->p != '.' && *ps->p != '[' && *ps->p != ']')
	{
		if (!ps->is_dot && isspace((unsigned char) *ps->p))
			return parse_fail(ps, "Whitespace in a key at character %d; write keys with spaces as ['a b'].",
							  parse_pos(ps));
		ps->p++;
	}
	if (peek(ps) == ']')
		return parse_fail(ps, "Unexpected \"]\" at character %d.", parse_pos(ps));
	if (!check_key(ps, kstart, (int) (ps->p - kstart), pos))
		return false;
	if (allma_path_canonical_index(kstart, (int) (ps->p - kstart), &idx))
		emit_index(ps, idx, recursive);
	else
		emit_key(ps, kstart, (int) (ps->p - kstart), recursive);
	return true;
}

/*
 * parse_dynamic parses "[$inner]" (cursor on "$"): the inner JSONPath is
 * scanned to the matching "]", checked to be simple, and recorded.
 */
static bool
parse_dynamic(PathParser *ps, bool recursive)
{
	const char *istart = ps->p;
	int			depth = 0;
	char		quote = '\0';
	PathParser	inner;
	int			pos = parse_pos(ps);

	check_stack_depth();
	if (ps->is_dot)
		return parse_fail(ps, "Dynamic segments are not allowed in dot paths (character %d).", pos);
	if (recursive)
		return parse_fail(ps, "A dynamic segment cannot follow \"..\" (character %d).", pos);

	for (; ps->p < ps->end; ps->p++)
	{
		char		c = *ps->p;

		if (quote)
		{
			if (c == '\\')
				ps->p++;
			else if (c == quote)
				quote = '\0';
		}
		else if (c == '\'' || c == '"')
			quote = c;
		else if (c == '[')
			depth++;
		else if (c == ']')
		{
			if (depth == 0)
				break;
			depth--;
		}
	}
	if (ps->p >= ps->end)
		return parse_fail(ps, "Unterminated dynamic segment at character %d.", pos);

	memset(&inner, 0, sizeof(inner));
	inner.start = istart;
	inner.p = istart;
	inner.end = ps->p;
	while (inner.end > inner.start && isspace((unsigned char) inner.end[-1]))
		inner.end--;
	inner.simple = true;
	inner.settable = true;
	initStringInfo(&inner.pg);
	if (!parse_segments(&inner))
		return parse_fail(ps, "Invalid dynamic segment \"%.*s\": %s",
						  (int) (inner.end - istart), istart, inner.err);
	if (!inner.simple)
		return parse_fail(ps, "The dynamic segment \"%.*s\" must be made of keys and indexes only.",
						  (int) (inner.end - istart), istart);
	ps->p++;					/* the closing "]" */
	add_seg(ps, SEG_DYNAMIC, 0, istart, (int) (inner.end - istart));
	ps->dynamic = true;
	return true;
}

/*
 * parse_bracket parses a "[...]" segment, cursor on "[".  recursive is set
 * after "..".  Dot paths accept keys and non-negative indexes only.
 */
static bool
parse_bracket(PathParser *ps, bool recursive)
{
	int			pos = parse_pos(ps);
	int			a = 0;
	bool		has_a;

	ps->p++;
	skip_ws(ps);

	if (peek(ps) == '\'' || peek(ps) == '"')
	{
		char	   *key;
		int			klen;

		if (!parse_quoted(ps, &key, &klen))
			return false;
		skip_ws(ps);
		if (peek(ps) == ',')
			return parse_fail(ps, "Unions of keys (character %d) are not supported.", pos);
		if (!expect_char(ps, ']', "after a quoted key"))
			return false;
		if (!check_key(ps, key, klen, pos))
			return false;
		emit_key(ps, key, klen, recursive);
		return true;
	}

	if (ps->is_dot)
	{
		const char *kstart = ps->p;
		const char *kend;
		int			idx;

		while (ps->p < ps->end && *ps->p != ']')
			ps->p++;
		if (ps->p >= ps->end)
			return parse_fail(ps, "Unterminated \"[\" at character %d.", pos);
		kend = ps->p;
		while (kend > kstart && isspace((unsigned char) kend[-1]))
			kend--;
		ps->p++;
		if (allma_path_canonical_index(kstart, (int) (kend - kstart), &idx))
			emit_index(ps, idx, false);
		else
		{
			if (kend - kstart > 0 && (*kstart == '-' || isdigit((unsigned char) *kstart)))
				return parse_fail(ps, "Invalid index \"%.*s\" at character %d; dot paths accept non-negative indexes only.",
								  (int) (kend - kstart), kstart, pos);
			if (!check_key(ps, kstart, (int) (kend - kstart), pos))
				return false;
			emit_key(ps, kstart, (int) (kend - kstart), false);
		}
		return true;
	}

	switch (peek(ps))
	{
		case '*':
			ps->p++;
			if (!expect_char(ps, ']', "after \"[*\""))
				return false;
			appendStringInfoString(&ps->pg, recursive ? ".**{1 to last}" : ".**{1}");
			ps->simple = false;
			return true;

		case '?':
			{
				FilterKind	kind;
				char	   *pred;

				ps->p++;
				pred = filter_or(ps, &kind);
				if (pred == NULL)
					return false;
				if (kind == FK_LITERAL)
					return parse_fail(ps, "The filter at character %d is a constant, not a condition.", pos);
				if (!expect_char(ps, ']', "to close the filter"))
					return false;
				appendStringInfoString(&ps->pg, recursive ? ".**{1 to last} ? (" : ".**{1} ? (");
				appendStringInfoString(&ps->pg, pred);
				appendStringInfoChar(&ps->pg, ')');
				ps->simple = false;
				return true;
			}

		case '(':
			return parse_fail(ps, "Script expressions \"[(...)]\" (character %d) are not supported; use a filter \"[?(...)]\" or an index.",
							  pos);

		case '$':
			return parse_dynamic(ps, recursive);

		default:
			break;
	}

	if (!parse_int(ps, &a, &has_a))
		return false;
	skip_ws(ps);

	if (peek(ps) == ':')
	{
		int			b = 0;
		int			step = 1;
		bool		has_b;
		bool		has_step = false;

		ps->p++;
		skip_ws(ps);
		if (!parse_int(ps, &b, &has_b))
			return false;
		skip_ws(ps);
		if (peek(ps) == ':')
		{
			ps->p++;
			skip_ws(ps);
			if (!parse_int(ps, &step, &has_step))
				return false;
		}
		if (has_step && step != 1)
			return parse_fail(ps, "Slice steps other than 1 (character %d) are not supported.", pos);
		if (!expect_char(ps, ']', "to close the slice"))
			return false;

		if (recursive)
			appendStringInfoString(&ps->pg, ".**");
		appendStringInfoChar(&ps->pg, '[');
		append_subscript(&ps->pg, has_a ? a : 0);
		appendStringInfoString(&ps->pg, " to ");
		if (!has_b)
			appendStringInfoString(&ps->pg, "last");
		else if (b > 0)
			appendStringInfo(&ps->pg, "%d", b - 1);
		else if (b == 0)
			appendStringInfoString(&ps->pg, "-1");
		else
			appendStringInfo(&ps->pg, "last-%d", -b);
		appendStringInfoChar(&ps->pg, ']');
		ps->simple = false;
		return true;
	}

	if (has_a && peek(ps) == ',')
	{
		if (recursive)
			appendStringInfoString(&ps->pg, ".**");
		appendStringInfoChar(&ps->pg, '[');
		append_subscript(&ps->pg, a);
		while (peek(ps) == ',')
		{
			ps->p++;
			skip_ws(ps);
			if (!parse_int(ps, &a, &has_a))
				return false;
			if (!has_a)
				return parse_fail(ps, "Expected an index in the union at character %d, found %s.",
								  parse_pos(ps), near_text(ps));
			appendStringInfoString(&ps->pg, ", ");
			append_subscript(&ps->pg, a);
			skip_ws(ps);
		}
		if (!expect_char(ps, ']', "to close the index union"))
			return false;
		appendStringInfoChar(&ps->pg, ']');
		ps->simple = false;
		return true;
	}

	if (has_a)
	{
		if (!expect_char(ps, ']', "after the index"))
			return false;
		emit_index(ps, a, recursive);
		return true;
	}

	/* an unquoted key: $[key] */
	{
		const char *kstart = ps->p;
		const char *kend;

		while (ps->p < ps->end && *ps->p != ']' && *ps->p != '[')
			ps->p++;
		if (peek(ps) != ']')
			return parse_fail(ps, "Unterminated \"[\" at character %d.", pos);
		kend = ps->p;
		while (kend > kstart && isspace((unsigned char) kend[-1]))
			kend--;
		ps->p++;
		if (kend == kstart)
			return parse_fail(ps, "Empty brackets at character %d.", pos);
		if (!check_key(ps, kstart, (int) (kend - kstart), pos))
			return false;
		emit_key(ps, kstart, (int) (kend - kstart), recursive);
		return true;
	}
}

/*
 * parse_segments parses the segments of a JSONPath after "$", or a whole
 * dot path.  Fills ps->pg, ps->segs and the flags.
 */
static bool
parse_segments(PathParser *ps)
{
	if (ps->is_dot)
	{
		if (ps->p >= ps->end)
			return parse_fail(ps, "The dot path is empty.");
		if (peek(ps) == '[')
		{
			if (!parse_bracket(ps, false))
				return false;
		}
		else if (peek(ps) == '.')
			return parse_fail(ps, "A dot path cannot start with \".\".");
		else if (!parse_dot_member(ps, false))
			return false;
	}
	else
	{
		if (peek(ps) != '$')
			return parse_fail(ps, "A JSONPath must start with \"$\".");
		ps->p++;
		/* "$." alone means the root */
		if (peek(ps) == '.' && ps->p + 1 == ps->end)
			ps->p++;
	}

	while (ps->p < ps->end)
	{
		if (peek(ps) == '.')
		{
			if (peek_at(ps, 1) == '.')
			{
				if (ps->is_dot)
					return parse_fail(ps, "Empty key at character %d.", parse_pos(ps) + 1);
				ps->p += 2;
				if (peek(ps) == '[')
				{
					if (!parse_bracket(ps, true))
						return false;
				}
				else if (peek(ps) == '\0' || peek(ps) == '.')
					return parse_fail(ps, "Expected a key or \"*\" after \"..\" at character %d.",
									  parse_pos(ps));
				else if (!parse_dot_member(ps, true))
					return false;
				ps->simple = false;
			}
			else
			{
				ps->p++;
				if (ps->p >= ps->end)
					return parse_fail(ps, "The path ends with \".\".");
				/* ".[" is read as "[", as jsonpath-plus does */
				if (peek(ps) == '[')
					continue;
				if (!parse_dot_member(ps, false))
					return false;
			}
		}
		else if (peek(ps) == '[')
		{
			if (!parse_bracket(ps, false))
				return false;
		}
		else
			return parse_fail(ps, "Unexpected %s at character %d.",
							  near_text(ps), parse_pos(ps));
	}
	if (!ps->simple)
		ps->settable = false;
	return true;
}


/* ---------------------------------------------------------------------
 * Filter expressions: a JavaScript subset translated into a predicate
 * ---------------------------------------------------------------------
 */

/*
 * filter_truthy wraps a path operand into a predicate testing JavaScript
 * truthiness of its value (present, and not false, 0, "" or null).
 */
static char *
filter_truthy(const char *path)
{
	/*
	 * A comparison between different types is "unknown" in PostgreSQL, and
	 * null compares false, so each disjunct below can only be true for the
	 * truthy values of one type.
	 */
	return psprintf("exists(%s ? (@.type() == \"object\" || @.type() == \"array\" || "
					"@ == true || @ > 0 || @ < 0 || @ > \"\"))", path);
}

/* converts an operand of && || ! into a predicate; NULL on a literal */
static char *
filter_as_pred(PathParser *ps, char *text, FilterKind kind)
{
	if (kind == FK_PRED || kind == FK_PRED_OR)
		return text;
	if (kind == FK_PATH)
		return filter_truthy(text);
	parse_fail(ps, "A constant cannot be used as a condition in a filter (near character %d).",
			   parse_pos(ps));
	return NULL;
}

/* reads the accessors after "@" or "$" in a filter */
static char *
filter_path(PathParser *ps)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, *ps->p++);
	for (;;)
	{
		if (peek(ps) == '.' && peek_at(ps, 1) != '.')
		{
			const char *kstart;

			ps->p++;
			kstart = ps->p;
			while (ps->p < ps->end &&
				   (isalnum((unsigned char) *ps->p) || *ps->p == '_' || *ps->p == '$' ||
					IS_HIGHBIT_SET(*ps->p)))
				ps->p++;
			if (ps->p == kstart)
			{
				parse_fail(ps, "Expected a property name at character %d in a filter, found %s.",
						   parse_pos(ps), near_text(ps));
				return NULL;
			}
			if (peek(ps) == '(')
			{
				parse_fail(ps, "Method calls such as \"%.*s()\" (character %d) are not supported in filters.",
						   (int) (ps->p - kstart), kstart, (int) (kstart - ps->start) + 1);
				return NULL;
			}
			appendStringInfoChar(&buf, '.');
			append_pg_string(&buf, kstart, (int) (ps->p - kstart));
		}
		else if (peek(ps) == '[')
		{
			int			pos = parse_pos(ps);
			int			n;
			bool		has_n;

			ps->p++;
			skip_ws(ps);
			if (peek(ps) == '\'' || peek(ps) == '"')
			{
				char	   *key;
				int			klen;

				if (!parse_quoted(ps, &key, &klen))
					return NULL;
				appendStringInfoChar(&buf, '.');
				append_pg_string(&buf, key, klen);
			}
			else
			{
				if (!parse_int(ps, &n, &has_n))
					return NULL;
				if (!has_n)
				{
					parse_fail(ps, "Only quoted keys and indexes are supported in brackets inside a filter (character %d).",
							   pos);
					return NULL;
				}
				appendStringInfoChar(&buf, '[');
				append_subscript(&buf, n);
				appendStringInfoChar(&buf, ']');
			}
			if (!expect_char(ps, ']', "in the filter path"))
				return NULL;
		}
		else
			break;
	}
	return buf.data;
}

/* a primary: ( expr ), @path, $path, number, string, true, false, null */
static char *
filter_primary(PathParser *ps, FilterKind *kind)
{
	char		c;

	check_stack_depth();
	skip_ws(ps);
	c = peek(ps);

	if (c == '(')
	{
		char	   *inner;

		ps->p++;
		inner = filter_or(ps, kind);
		if (inner == NULL || !expect_char(ps, ')', "in the filter"))
			return NULL;
		return inner;
	}
	if (c == '@' || c == '$')
	{
		*kind = FK_PATH;
		return filter_path(ps);
	}
	if (c == '\'' || c == '"')
	{
		char	   *s;
		int			len;
		StringInfoData buf;

		if (!parse_quoted(ps, &s, &len))
			return NULL;
		initStringInfo(&buf);
		append_pg_string(&buf, s, len);
		*kind = FK_LITERAL;
		return buf.data;
	}
	if (isdigit((unsigned char) c) || c == '-' ||
		(c == '.' && isdigit((unsigned char) peek_at(ps, 1))))
	{
		const char *nstart = ps->p;
		StringInfoData buf;

		if (c == '-')
			ps->p++;
		while (isdigit((unsigned char) peek(ps)))
			ps->p++;
		if (peek(ps) == '.')
		{
			ps->p++;
			while (isdigit((unsigned char) peek(ps)))
				ps->p++;
		}
		if (peek(ps) == 'e' || peek(ps) == 'E')
		{
			ps->p++;
			if (peek(ps) == '+' || peek(ps) == '-')
				ps->p++;
			if (!isdigit((unsigned char) peek(ps)))
			{
				parse_fail(ps, "Invalid number at character %d in a filter.",
						   (int) (nstart - ps->start) + 1);
				return NULL;
			}
			while (isdigit((unsigned char) peek(ps)))
				ps->p++;
		}
		if (ps->p == nstart + (c == '-' ? 1 : 0) ||
			isalpha((unsigned char) peek(ps)) || peek(ps) == '_')
		{
			parse_fail(ps, "Invalid number at character %d in a filter.",
					   (int) (nstart - ps->start) + 1);
			return NULL;
		}
		/* PostgreSQL wants a digit before the point: "0.5", not ".5" */
		initStringInfo(&buf);
		if (c == '-')
			appendStringInfoChar(&buf, '-');
		if (nstart[c == '-' ? 1 : 0] == '.')
			appendStringInfoChar(&buf, '0');
		appendBinaryStringInfo(&buf, nstart + (c == '-' ? 1 : 0),
							   (int) (ps->p - nstart) - (c == '-' ? 1 : 0));
		*kind = FK_LITERAL;
		return buf.data;
	}
	if (isalpha((unsigned char) c))
	{
		const char *wstart = ps->p;
		int			wlen;

		while (isalnum((unsigned char) peek(ps)) || peek(ps) == '_')
			ps->p++;
		wlen = (int) (ps->p - wstart);
		*kind = FK_LITERAL;
		if (wlen == 4 && strncmp(wstart, "true", 4) == 0)
			return pstrdup("true");
		if (wlen == 5 && strncmp(wstart, "false", 5) == 0)
			return pstrdup("false");
		if (wlen == 4 && strncmp(wstart, "null", 4) == 0)
			return pstrdup("null");
		parse_fail(ps, "Unsupported word \"%.*s\" at character %d in a filter; filters accept @ and $ paths, numbers, strings, true, false and null.",
				   wlen, wstart, (int) (wstart - ps->start) + 1);
		return NULL;
	}
	parse_fail(ps, "Unsupported filter syntax at character %d: %s.",
			   parse_pos(ps), near_text(ps));
	return NULL;
}

/* reads a comparison operator, returning its PostgreSQL form or NULL */
static const char *
filter_cmp_op(PathParser *ps)
{
	static const struct
	{
		const char *js;
		const char *pg;
	}			ops[] =
	{
		{"===", "=="}, {"!==", "!="}, {"==", "=="}, {"!=", "!="},
		{"<=", "<="}, {">=", ">="}, {"<", "<"}, {">", ">"}
	};
	int			i;

	skip_ws(ps);
	for (i = 0; i < lengthof(ops); i++)
	{
		int			len = strlen(ops[i].js);

		if (ps->end - ps->p >= len && strncmp(ps->p, ops[i].js, len) == 0)
		{
			ps->p += len;
			return ops[i].pg;
		}
	}
	return NULL;
}

static char *
filter_cmp(PathParser *ps, FilterKind *kind)
{
	char	   *left;
	char	   *right;
	const char *op;
	FilterKind	rkind;

	left = filter_primary(ps, kind);
	if (left == NULL)
		return NULL;
	skip_ws(ps);
	if (peek(ps) == '=' && peek_at(ps, 1) != '=')
	{
		parse_fail(ps, "Assignment \"=\" at character %d in a filter; use \"==\".", parse_pos(ps));
		return NULL;
	}
	op = filter_cmp_op(ps);
	if (op == NULL)
		return left;
	right = filter_primary(ps, &rkind);
	if (right == NULL)
		return NULL;
	if (*kind == FK_PRED || *kind == FK_PRED_OR ||
		rkind == FK_PRED || rkind == FK_PRED_OR)
	{
		parse_fail(ps, "Comparing the result of a condition (near character %d) is not supported in filters.",
				   parse_pos(ps));
		return NULL;
	}
	*kind = FK_PRED;
	return psprintf("%s %s %s", left, op, right);
}

static char *
filter_unary(PathParser *ps, FilterKind *kind)
{
	skip_ws(ps);
	if (peek(ps) == '!' && peek_at(ps, 1) != '=')
	{
		char	   *inner;

		ps->p++;
		inner = filter_unary(ps, kind);
		if (inner == NULL)
			return NULL;
		inner = filter_as_pred(ps, inner, *kind);
		if (inner == NULL)
			return NULL;
		*kind = FK_PRED;
		return psprintf("!(%s)", inner);
	}
	return filter_cmp(ps, kind);
}

/*
 * filter_chain reads operands joined by "&&" (or, with is_or, by "||",
 * whose operands are "&&" chains) and translates them into one predicate;
 * NULL with ps->err set on error.  && binds tighter than ||, so a
 * parenthesized || chain that is an operand of && keeps its parentheses.
 */
static char *
filter_chain(PathParser *ps, FilterKind *kind, bool is_or)
{
	char		op = is_or ? '|' : '&';
	char	   *left = is_or ? filter_chain(ps, kind, false) : filter_unary(ps, kind);

	while (left != NULL)
	{
		FilterKind	rkind;
		char	   *right;

		skip_ws(ps);
		if (!(peek(ps) == op && peek_at(ps, 1) == op))
			break;
		ps->p += 2;
		right = is_or ? filter_chain(ps, &rkind, false) : filter_unary(ps, &rkind);
		if (right == NULL)
			return NULL;
		left = filter_as_pred(ps, left, *kind);
		right = filter_as_pred(ps, right, rkind);
		if (left == NULL || right == NULL)
			return NULL;
		if (is_or)
		{
			left = psprintf("%s || %s", left, right);
			*kind = FK_PRED_OR;
		}
		else
		{
			left = psprintf(*kind == FK_PRED_OR ? "(%s) && " : "%s && ", left);
			left = psprintf(rkind == FK_PRED_OR ? "%s(%s)" : "%s%s", left, right);
			*kind = FK_PRED;
		}
	}
	return left;
}

/*
 * filter_or translates a filter expression at the cursor (the JavaScript
 * subset described in the file header) into PostgreSQL jsonpath and says
 * what it is in *kind.  Returns NULL with ps->err set on error.  A bare
 * path operand of the whole filter is turned into a truthiness test.
 */
static char *
filter_or(PathParser *ps, FilterKind *kind)
{
	char	   *expr = filter_chain(ps, kind, true);

	if (expr != NULL && *kind == FK_PATH)
	{
		expr = filter_truthy(expr);
		*kind = FK_PRED;
	}
	return expr;
}


/* ---------------------------------------------------------------------
 * Entry point
 * ---------------------------------------------------------------------
 */

/*
 * allma_path_parse: see path_parse.h.
 */
ParsedPath *
allma_path_parse(const char *text, bool is_dot, char **errmsg)
{
	PathParser	ps;
	ParsedPath *pp;

	memset(&ps, 0, sizeof(ps));
	ps.start = text;
	ps.end = text + strlen(text);
	while (ps.start < ps.end && isspace((unsigned char) *ps.start))
		ps.start++;
	while (ps.end > ps.start && isspace((unsigned char) ps.end[-1]))
		ps.end--;
	ps.p = ps.start;
	ps.is_dot = is_dot;
	ps.simple = true;
	ps.settable = true;
	initStringInfo(&ps.pg);

	if (!parse_segments(&ps))
	{
		if (errmsg)
			*errmsg = ps.err;
		return NULL;
	}

	pp = palloc0(sizeof(ParsedPath));
	pp->is_dot = is_dot;
	pp->simple = ps.simple;
	pp->settable = ps.settable && ps.simple;
	pp->dynamic = ps.dynamic;
	pp->nsegs = ps.nsegs;
	pp->segs = ps.segs;

	if (ps.dynamic)
	{
		if (!ps.simple)
		{
			if (errmsg)
				*errmsg = pstrdup("Dynamic segments \"[$...]\" are only supported in paths made of keys and indexes.");
			return NULL;
		}
		pp->pgtext = NULL;
	}
	else if (ps.simple)
		pp->pgtext = psprintf("$%s", ps.pg.data);
	else
	{
		char	   *pgerr = NULL;

		pp->pgtext = psprintf("strict $.**{0}%s", ps.pg.data);
		pp->jsp = allma_jsonpath_parse(pp->pgtext, &pgerr);
		if (pp->jsp == NULL)
		{
			if (errmsg)
				*errmsg = psprintf("Its translation \"%s\" is not a valid PostgreSQL jsonpath: %s.",
								   pp->pgtext, pgerr);
			return NULL;
		}
	}
	return pp;
}
