/*-------------------------------------------------------------------------
 *
 * mail_parse.c
 *	  Parsing an inbound RFC 5322 / MIME message for the email trigger.
 *
 * See mail_parse.h.  The message is read once, front to back: the header
 * section (folded lines joined), then the body, walked as a tree of MIME
 * parts.  Line ends may be CRLF or bare LF.  Text is converted from the
 * parts' charsets (and encoded words' charsets) to the database encoding;
 * the text bodies get LF line ends.  Errors are SQLSTATE 22P02 (malformed)
 * or 54000 (a limit), with a message that says what is wrong where.
 *
 * IDENTIFICATION
 *	  src/mail_parse.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "common/base64.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "jsonb_util.h"
#include "mail_parse.h"
#include "steps/steps.h"

typedef struct MailHeader
{
	char	   *name;			/* lower case */
	char	   *value;			/* unfolded, trimmed */
} MailHeader;

typedef struct ParseState
{
	AllmaParsedMail *out;
	int			parts;
} ParseState;

#define MAIL_ERROR(...) \
	ereport(ERROR, \
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION), \
			 errmsg("invalid email message: " __VA_ARGS__)))

/* ----------------------------------------------------------------
 * Small text helpers
 * ----------------------------------------------------------------
 */

static bool
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* a trimmed copy of s[0..len) */
static char *
trimmed(const char *s, int len)
{
	while (len > 0 && is_ws(*s))
		s++, len--;
	while (len > 0 && is_ws(s[len - 1]))
		len--;
	return pnstrdup(s, len);
}

static char *
lower_copy(const char *s)
{
	char	   *out = pstrdup(s);

	for (char *p = out; *p; p++)
		*p = pg_ascii_tolower((unsigned char) *p);
	return out;
}

/* the line at p: *le at its end (before CR LF), *next after it */
static void
next_line(const char *p, const char *end, const char **le, const char **next)
{
	const char *nl = memchr(p, '\n', end - p);

	if (nl == NULL)
	{
		*le = end;
		*next = end;
		return;
	}
	*next = nl + 1;
	*le = (nl > p && nl[-1] == '\r') ? nl - 1 : nl;
}

/* s with CRLF (and lone CR) made LF */
static char *
normalize_newlines(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const char *p = s; *p; p++)
	{
		if (*p == '\r')
		{
			appendStringInfoChar(&buf, '\n');
			if (p[1] == '\n')
				p++;
		}
		else
			appendStringInfoChar(&buf, *p);
	}
	return buf.data;
}

/*
 * to_server converts len bytes in charset to the database encoding; NULL
 * when the charset is unknown and the bytes are not UTF-8 either, or when
 * they are not valid in it, or hold a NUL byte.  No charset (or US-ASCII):
 * UTF-8, which ASCII is part of.
 */
static char *
to_server(const char *data, int len, const char *charset)
{
	int			enc = PG_UTF8;
	char	   *copy;

	if (charset != NULL && charset[0] != '\0' &&
		pg_strcasecmp(charset, "us-ascii") != 0 && pg_strcasecmp(charset, "ascii") != 0)
	{
		enc = pg_char_to_encoding(charset);
		if (enc < 0)
			enc = PG_UTF8;
	}
	if (memchr(data, '\0', len) != NULL)
		return NULL;
	if (!pg_verify_mbstr(enc, data, len, true))
		return NULL;
	copy = pnstrdup(data, len);
	return pg_any_to_server(copy, len, enc);
}

/* ----------------------------------------------------------------
 * Transfer encodings
 * ----------------------------------------------------------------
 */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = pg_ascii_tolower((unsigned char) c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* quoted-printable (RFC 2045 6.7); q: the "Q" of encoded words ("_" is a space) */
static char *
qp_decode(const char *s, int len, bool q, int *outlen)
{
	char	   *out = palloc(len + 1);
	int			n = 0;

	for (int i = 0; i < len; i++)
	{
		char		c = s[i];

		if (c == '=')
		{
			int			j = i + 1;

			if (j + 1 < len && hexval(s[j]) >= 0 && hexval(s[j + 1]) >= 0)
			{
				out[n++] = (char) (hexval(s[j]) * 16 + hexval(s[j + 1]));
				i = j + 1;
				continue;
			}
			/* a soft line break: "=", maybe white space, then the line end */
			while (j < len && (s[j] == ' ' || s[j] == '\t'))
				j++;
			if (!q && (j == len || s[j] == '\n' || s[j] == '\r'))
			{
				if (j < len && s[j] == '\r')
					j++;
				if (j < len && s[j] == '\n')
					j++;
				i = j - 1;
				continue;
			}
			out[n++] = c;
		}
		else if (q && c == '_')
			out[n++] = ' ';
		else
			out[n++] = c;
	}
	out[n] = '\0';
	*outlen = n;
	return out;
}

/* base64, white space ignored; NULL when invalid */
static char *
b64_decode(const char *s, int len, int *outlen)
{
	char	   *clean = palloc(len + 4);
	int			n = 0;
	char	   *out;
	int			m;

	for (int i = 0; i < len; i++)
		if (!is_ws(s[i]))
			clean[n++] = s[i];
	/* tolerate missing padding */
	while (n % 4 != 0 && n % 4 != 1)
		clean[n++] = '=';
	out = palloc(pg_b64_dec_len(n) + 1);
	m = pg_b64_decode(clean, n, out, pg_b64_dec_len(n));
	if (m < 0)
		return NULL;
	out[m] = '\0';
	*outlen = m;
	return out;
}

/* ----------------------------------------------------------------
 * RFC 2047 encoded words
 * ----------------------------------------------------------------
 */

/*
 * decode_word: the encoded word "=?charset?B|Q?text?=" at p, decoded into
 * *out, *after past it; false (p is plain text) when it is not one or it
 * cannot be decoded.
 */
static bool
decode_word(const char *p, char **out, const char **after)
{
	const char *cs = p + 2;
	const char *q1 = cs;
	const char *text;
	const char *q2;
	char		enc;
	char	   *charset;
	char	   *bytes;
	int			n;

	/* every scan is bounded (no white space in a word), so many "=?" stay linear */
	while (*q1 && *q1 != '?' && !is_ws(*q1) && q1 - cs <= 64)
		q1++;
	if (*q1 != '?' || q1 == cs)
		return false;
	enc = pg_ascii_toupper((unsigned char) q1[1]);
	if ((enc != 'B' && enc != 'Q') || q1[2] != '?')
		return false;
	text = q1 + 3;
	for (q2 = text; *q2 && !is_ws(*q2) && !(q2[0] == '?' && q2[1] == '='); q2++)
		if (q2 - text > 4096)
			return false;
	if (q2[0] != '?' || q2[1] != '=')
		return false;
	charset = pnstrdup(cs, q1 - cs);
	if (strchr(charset, '*'))
		*strchr(charset, '*') = '\0';	/* RFC 2231 language */
	bytes = enc == 'B' ? b64_decode(text, q2 - text, &n) : qp_decode(text, q2 - text, true, &n);
	if (bytes == NULL)
		return false;
	*out = to_server(bytes, n, charset);
	if (*out == NULL)
		return false;
	*after = q2 + 2;
	return true;
}

/* header text with its encoded words decoded (white space between two of them dropped) */
static char *
decode_words(const char *s)
{
	StringInfoData out;
	StringInfoData ws;
	bool		prev_encoded = false;
	const char *p = s;

	initStringInfo(&out);
	initStringInfo(&ws);
	while (*p)
	{
		char	   *decoded;
		const char *after;

		if (p[0] == '=' && p[1] == '?' && decode_word(p, &decoded, &after))
		{
			if (!prev_encoded)
				appendStringInfoString(&out, ws.data);
			resetStringInfo(&ws);
			appendStringInfoString(&out, decoded);
			prev_encoded = true;
			p = after;
			continue;
		}
		if (is_ws(*p))
		{
			appendStringInfoChar(&ws, *p == '\t' ? ' ' : *p);
			p++;
			continue;
		}
		appendStringInfoString(&out, ws.data);
		resetStringInfo(&ws);
		prev_encoded = false;
		appendStringInfoChar(&out, *p++);
	}
	appendStringInfoString(&out, ws.data);
	return out.data;
}

/* ----------------------------------------------------------------
 * Header fields
 * ----------------------------------------------------------------
 */

static void
add_header(List **hdrs, StringInfo name, StringInfo value, const char *where)
{
	MailHeader *h;

	if (list_length(*hdrs) >= ALLMA_MAIL_MAX_HEADERS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("invalid email message: %s has more than %d header fields",
						where, ALLMA_MAIL_MAX_HEADERS)));
	h = palloc(sizeof(MailHeader));
	h->name = lower_copy(name->data);
	h->value = trimmed(value->data, value->len);
	/* a lone CR inside a line (not a line end) is white space */
	for (char *c = h->value; *c; c++)
		if (*c == '\r')
			*c = ' ';
	*hdrs = lappend(*hdrs, h);
}

/*
 * parse_headers reads the header section at p (up to the empty line that
 * ends it, or end) into a list of MailHeader; *body is where the body
 * starts.  where names the message or part in errors.
 */
static List *
parse_headers(const char *p, const char *end, const char **body, const char *where)
{
	List	   *hdrs = NIL;
	const char *start = p;
	StringInfoData name;
	StringInfoData value;
	bool		have = false;
	int			lineno = 0;

	initStringInfo(&name);
	initStringInfo(&value);
	while (p < end)
	{
		const char *le;
		const char *nx;

		next_line(p, end, &le, &nx);
		lineno++;
		if (le == p)
		{
			p = nx;
			break;				/* the empty line before the body */
		}
		if (nx - start > ALLMA_MAIL_MAX_HEADER_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("invalid email message: the header section of %s exceeds %d bytes",
							where, ALLMA_MAIL_MAX_HEADER_BYTES)));
		if (*p == ' ' || *p == '\t')
		{
			/* a folded line continues the field before it */
			if (!have)
				MAIL_ERROR("line %d of %s continues a header field that does not exist", lineno, where);
			appendBinaryStringInfo(&value, p, le - p);
		}
		else
		{
			const char *colon = memchr(p, ':', le - p);
			const char *ne;

			if (have)
				add_header(&hdrs, &name, &value, where);
			have = false;
			/* an mbox "From " line before the first field */
			if (colon == NULL && lineno == 1 && le - p >= 5 && strncmp(p, "From ", 5) == 0)
			{
				p = nx;
				continue;
			}
			if (colon == NULL)
				MAIL_ERROR("line %d of %s is not a header field (no colon) and the header section did not end with an empty line",
						   lineno, where);
			ne = colon;
			while (ne > p && (ne[-1] == ' ' || ne[-1] == '\t'))
				ne--;
			if (ne == p)
				MAIL_ERROR("line %d of %s has a header field without a name", lineno, where);
			for (const char *c = p; c < ne; c++)
				if ((unsigned char) *c < 33 || (unsigned char) *c > 126)
					MAIL_ERROR("line %d of %s has an invalid header field name", lineno, where);
			resetStringInfo(&name);
			appendBinaryStringInfo(&name, p, ne - p);
			resetStringInfo(&value);
			appendBinaryStringInfo(&value, colon + 1, le - colon - 1);
			have = true;
		}
		p = nx;
	}
	if (have)
		add_header(&hdrs, &name, &value, where);
	*body = p;
	return hdrs;
}

static const char *
get_header(List *hdrs, const char *name)
{
	ListCell   *lc;

	foreach(lc, hdrs)
	{
		MailHeader *h = lfirst(lc);

		if (strcmp(h->name, name) == 0)
			return h->value;
	}
	return NULL;
}

/* "type/subtype" (or a disposition) of a structured field: before ";", lower case */
static char *
field_token(const char *v)
{
	const char *semi = strchr(v, ';');

	return lower_copy(trimmed(v, semi ? semi - v : (int) strlen(v)));
}

/* "a \"b\"" unquoted: the inside of a quoted string, backslash escapes removed */
static char *
unquote(const char *s)
{
	int			len = strlen(s);
	StringInfoData buf;

	if (len < 2 || s[0] != '"' || s[len - 1] != '"')
		return pstrdup(s);
	initStringInfo(&buf);
	for (int i = 1; i < len - 1; i++)
	{
		if (s[i] == '\\' && i + 1 < len - 1)
			i++;
		appendStringInfoChar(&buf, s[i]);
	}
	return buf.data;
}

/* RFC 2231 "charset'lang'percent-encoded" */
static char *
rfc2231_value(const char *v)
{
	const char *q1 = strchr(v, '\'');
	const char *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
	char	   *charset;
	char	   *bytes;
	int			n = 0;
	char	   *out;

	if (q2 == NULL)
		return pstrdup(v);
	charset = pnstrdup(v, q1 - v);
	bytes = palloc(strlen(q2) + 1);
	for (const char *p = q2 + 1; *p; p++)
	{
		if (*p == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0)
		{
			bytes[n++] = (char) (hexval(p[1]) * 16 + hexval(p[2]));
			p += 2;
		}
		else
			bytes[n++] = *p;
	}
	out = to_server(bytes, n, charset);
	return out ? out : pstrdup(v);
}

/* parameter "name" of a structured field (Content-Type, Content-Disposition), or NULL */
static char *
field_param(const char *v, const char *name)
{
	const char *p = strchr(v, ';');
	int			nlen = strlen(name);

	while (p != NULL && *p)
	{
		const char *start = p + 1;
		const char *eq;
		const char *vend;
		bool		quoted = false;
		char	   *pname;

		/* the end of this parameter: the next ";" outside quotes */
		for (vend = start; *vend && (quoted || *vend != ';'); vend++)
		{
			if (*vend == '\\' && quoted && vend[1])
				vend++;
			else if (*vend == '"')
				quoted = !quoted;
		}
		eq = memchr(start, '=', vend - start);
		if (eq != NULL)
		{
			pname = lower_copy(trimmed(start, eq - start));
			if (strncmp(pname, name, nlen) == 0 &&
				(pname[nlen] == '\0' || strcmp(pname + nlen, "*") == 0))
			{
				char	   *val = unquote(trimmed(eq + 1, vend - eq - 1));

				return pname[nlen] == '*' ? rfc2231_value(val) : val;
			}
		}
		p = *vend ? vend : NULL;
	}
	return NULL;
}

/* ----------------------------------------------------------------
 * Addresses
 * ----------------------------------------------------------------
 */

/* one mailbox: "Name <addr>", "<addr>", "addr (Name)" or "addr" */
static void
parse_mailbox(const char *raw, char **name, char **addr)
{
	const char *lt = NULL;
	bool		quoted = false;

	*name = NULL;
	*addr = NULL;
	for (const char *p = raw; *p; p++)
	{
		if (*p == '\\' && quoted && p[1])
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (*p == '<' && !quoted)
		{
			lt = p;
			break;
		}
	}
	if (lt != NULL)
	{
		const char *gt = strchr(lt, '>');
		char	   *n = trimmed(raw, lt - raw);

		*addr = trimmed(lt + 1, gt ? gt - lt - 1 : (int) strlen(lt + 1));
		if (n[0] != '\0')
			*name = decode_words(unquote(n));
	}
	else
	{
		const char *paren = strchr(raw, '(');

		*addr = trimmed(raw, paren ? paren - raw : (int) strlen(raw));
		if (paren != NULL)
		{
			const char *close = strrchr(paren, ')');
			char	   *n = trimmed(paren + 1, close ? close - paren - 1 : (int) strlen(paren + 1));

			if (n[0] != '\0')
				*name = decode_words(n);
		}
	}
	if ((*addr)[0] == '\0' || strchr(*addr, '@') == NULL)
		*addr = NULL;
}

/* the bare addresses of an address-list field (groups' names dropped) */
static List *
address_list(const char *v, List *out)
{
	ListCell   *lc;

	if (v == NULL)
		return out;
	foreach(lc, allma_mime_header_addresses(v))
	{
		char	   *tok = lfirst(lc);
		char	   *colon = strchr(tok, ':');
		char	   *lt = strchr(tok, '<');
		char	   *name;
		char	   *addr;

		/* "Group: a@x" (the list was split at "," and ";") */
		if (colon != NULL && (lt == NULL || colon < lt) && strchr(tok, '"') == NULL)
			tok = colon + 1;
		parse_mailbox(tok, &name, &addr);
		if (addr != NULL)
			out = lappend(out, addr);
	}
	return out;
}

/* ----------------------------------------------------------------
 * The MIME tree
 * ----------------------------------------------------------------
 */

static void walk_part(ParseState *st, List *hdrs, const char *body, const char *end,
					  int depth, const char *where);

/* the parts of a multipart body, each walked */
static void
walk_multipart(ParseState *st, const char *ctype, const char *body, const char *end,
			   int depth, const char *where)
{
	char	   *boundary = field_param(ctype, "boundary");
	int			blen;
	const char *p = body;
	const char *part_start = NULL;
	bool		closed = false;
	int			nparts = 0;

	if (boundary == NULL || boundary[0] == '\0')
		MAIL_ERROR("%s is multipart but has no boundary parameter", where);
	blen = strlen(boundary);
	if (blen > 200)
		MAIL_ERROR("%s has a boundary longer than 200 characters", where);
	if (depth >= ALLMA_MAIL_MAX_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("invalid email message: multipart parts are nested more than %d deep",
						ALLMA_MAIL_MAX_DEPTH)));

	while (p < end && !closed)
	{
		const char *le;
		const char *nx;
		bool		delim = false;

		next_line(p, end, &le, &nx);
		if (le - p >= blen + 2 && p[0] == '-' && p[1] == '-' && memcmp(p + 2, boundary, blen) == 0)
		{
			const char *rest = p + 2 + blen;

			if (le - rest >= 2 && rest[0] == '-' && rest[1] == '-')
				delim = closed = true;
			else
			{
				delim = true;
				for (const char *c = rest; c < le; c++)
					if (*c != ' ' && *c != '\t')
						delim = false;
			}
		}
		if (delim)
		{
			if (part_start != NULL)
			{
				/* the line break before the delimiter belongs to it */
				const char *part_end = p;
				List	   *hdrs;
				const char *part_body;
				char	   *name;

				if (part_end > part_start && part_end[-1] == '\n')
					part_end--;
				if (part_end > part_start && part_end[-1] == '\r')
					part_end--;
				nparts++;
				name = psprintf("part %d of %s", nparts, where);
				hdrs = parse_headers(part_start, part_end, &part_body, name);
				walk_part(st, hdrs, part_body, part_end, depth + 1, name);
			}
			part_start = nx;
		}
		p = nx;
	}
	if (!closed && part_start != NULL && part_start < end)
	{
		/* no closing delimiter: the last part runs to the end */
		List	   *hdrs;
		const char *part_body;
		char	   *name;

		nparts++;
		name = psprintf("part %d of %s", nparts, where);
		hdrs = parse_headers(part_start, end, &part_body, name);
		walk_part(st, hdrs, part_body, end, depth + 1, name);
	}
	if (part_start == NULL)
		MAIL_ERROR("%s has no part (no line \"--%s\")", where, boundary);
}

/* the decoded content of a part's body (its Content-Transfer-Encoding) */
static char *
decode_content(const char *cte, const char *body, int len, int *outlen, const char *where)
{
	if (cte == NULL || strcmp(cte, "7bit") == 0 || strcmp(cte, "8bit") == 0 ||
		strcmp(cte, "binary") == 0)
	{
		*outlen = len;
		return pnstrdup(body, len);
	}
	if (strcmp(cte, "quoted-printable") == 0)
		return qp_decode(body, len, false, outlen);
	if (strcmp(cte, "base64") == 0)
	{
		char	   *out = b64_decode(body, len, outlen);

		if (out == NULL)
			MAIL_ERROR("the base64 content of %s is not valid base64", where);
		return out;
	}
	MAIL_ERROR("%s has an unknown Content-Transfer-Encoding \"%s\"", where, cte);
	return NULL;				/* keep compiler quiet */
}

static void
walk_part(ParseState *st, List *hdrs, const char *body, const char *end, int depth,
		  const char *where)
{
	const char *ctype_hdr = get_header(hdrs, "content-type");
	const char *disp_hdr = get_header(hdrs, "content-disposition");
	const char *cte_hdr = get_header(hdrs, "content-transfer-encoding");
	char	   *ctype = ctype_hdr ? field_token(ctype_hdr) : pstrdup("text/plain");
	char	   *disposition = disp_hdr ? field_token(disp_hdr) : NULL;
	char	   *filename = NULL;
	char	   *data;
	int			len;
	bool		is_text = strcmp(ctype, "text/plain") == 0;
	bool		is_html = strcmp(ctype, "text/html") == 0;

	if (++st->parts > ALLMA_MAIL_MAX_PARTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("invalid email message: more than %d MIME parts", ALLMA_MAIL_MAX_PARTS)));
	if (strncmp(ctype, "multipart/", 10) == 0)
	{
		walk_multipart(st, ctype_hdr, body, end, depth, where);
		return;
	}
	if (ctype[0] == '\0' || strchr(ctype, '/') == NULL)
		ctype = pstrdup("text/plain"), is_text = true;

	data = decode_content(cte_hdr ? field_token(cte_hdr) : NULL, body, end - body, &len, where);
	if (disp_hdr != NULL)
		filename = field_param(disp_hdr, "filename");
	if (filename == NULL && ctype_hdr != NULL)
		filename = field_param(ctype_hdr, "name");
	if (filename != NULL)
		filename = decode_words(filename);

	if ((is_text || is_html) && (disposition == NULL || strcmp(disposition, "attachment") != 0) &&
		(is_text ? st->out->text == NULL : st->out->html == NULL))
	{
		char	   *charset = ctype_hdr ? field_param(ctype_hdr, "charset") : NULL;
		char	   *s = to_server(data, len, charset);

		if (s == NULL)
			MAIL_ERROR("the %s content of %s is not valid %s text",
					   ctype, where, charset ? charset : "UTF-8");
		if (is_text)
			st->out->text = normalize_newlines(s);
		else
			st->out->html = normalize_newlines(s);
		return;
	}
	{
		AllmaMailInAttachment *a = palloc0(sizeof(AllmaMailInAttachment));
		const char *cid = get_header(hdrs, "content-id");

		a->filename = filename;
		a->content_type = ctype;
		if (cid != NULL)
		{
			char	   *c = trimmed(cid, strlen(cid));
			int			n = strlen(c);

			if (n >= 2 && c[0] == '<' && c[n - 1] == '>')
				c = pnstrdup(c + 1, n - 2);
			a->content_id = c;
		}
		a->disposition = (disposition && strcmp(disposition, "inline") == 0) ? "inline" : "attachment";
		a->data = data;
		a->len = len;
		st->out->attachments = lappend(st->out->attachments, a);
	}
}

/*
 * html_to_text: a plain text of an HTML body, for messages without a
 * text/plain part: script and style contents and tags dropped, line breaks
 * at <br>, </p>, </div>, </li>, </tr> and headings, the common entities
 * and numeric character references decoded, runs of more than one empty
 * line shortened.  Linear in the input.
 */
static char *
html_to_text(const char *html)
{
	StringInfoData out;
	const char *p = html;
	int			newlines = 0;

	initStringInfo(&out);
	while (*p)
	{
		if (*p == '<')
		{
			const char *gt = strchr(p, '>');
			char		name[12];
			int			n = 0;
			const char *q = p + 1;
			bool		closing = false;

			if (gt == NULL)
				break;
			if (*q == '/')
				closing = true, q++;
			while (n < (int) sizeof(name) - 1 && isalnum((unsigned char) *q))
				name[n++] = pg_ascii_tolower((unsigned char) *q++);
			name[n] = '\0';
			if (!closing && (strcmp(name, "script") == 0 || strcmp(name, "style") == 0))
			{
				/* skip to the closing tag */
				const char *end = gt;

				while ((end = strchr(end, '<')) != NULL &&
					   !(end[1] == '/' && pg_strncasecmp(end + 2, name, n) == 0))
					end++;
				gt = end ? strchr(end, '>') : NULL;
				if (gt == NULL)
					break;
			}
			else if (strcmp(name, "br") == 0 || (closing && (strcmp(name, "p") == 0 ||
															 strcmp(name, "div") == 0 ||
															 strcmp(name, "li") == 0 ||
															 strcmp(name, "tr") == 0 ||
															 (name[0] == 'h' && name[1] >= '1' &&
															  name[1] <= '6' && name[2] == '\0'))))
			{
				if (newlines < 2)
					appendStringInfoChar(&out, '\n');
				newlines++;
			}
			p = gt + 1;
			continue;
		}
		if (*p == '&')
		{
			static const struct
			{
				const char *entity;
				const char *text;
			}			entities[] = {
				{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""},
				{"&#39;", "'"}, {"&apos;", "'"}, {"&nbsp;", " "}, {NULL, NULL}
			};
			bool		done = false;

			for (int i = 0; entities[i].entity != NULL && !done; i++)
				if (pg_strncasecmp(p, entities[i].entity, strlen(entities[i].entity)) == 0)
				{
					appendStringInfoString(&out, entities[i].text);
					p += strlen(entities[i].entity);
					done = true;
				}
			if (!done && p[1] == '#')
			{
				char	   *end;
				bool		hex = (p[2] == 'x' || p[2] == 'X');
				long		cp = strtol(p + (hex ? 3 : 2), &end, hex ? 16 : 10);

				if (*end == ';' && end > p + (hex ? 3 : 2) && cp > 0 && cp <= 0x10FFFF &&
					!(cp >= 0xD800 && cp <= 0xDFFF) && GetDatabaseEncoding() == PG_UTF8)
				{
					unsigned char buf[8];

					unicode_to_utf8((pg_wchar) cp, buf);
					appendBinaryStringInfo(&out, (char *) buf, pg_utf_mblen(buf));
					p = end + 1;
					done = true;
				}
			}
			if (done)
			{
				newlines = 0;
				continue;
			}
		}
		if (*p == '\n' || *p == '\r' || *p == '\t')
		{
			/* HTML source line breaks are white space */
			if (out.len > 0 && out.data[out.len - 1] != ' ' && out.data[out.len - 1] != '\n')
				appendStringInfoChar(&out, ' ');
			p++;
			continue;
		}
		appendStringInfoChar(&out, *p++);
		newlines = 0;
	}
	return trimmed(out.data, out.len);
}

/* ----------------------------------------------------------------
 * The message
 * ----------------------------------------------------------------
 */

AllmaParsedMail *
allma_mail_parse(const char *msg, size_t len)
{
	AllmaParsedMail *m = palloc0(sizeof(AllmaParsedMail));
	ParseState	st = {m, 0};
	const char *end = msg + len;
	const char *body;
	List	   *hdrs;
	const char *v;

	if (len > ALLMA_MAIL_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("email message is too large: %zu bytes", len),
				 errdetail("The limit is %d bytes.", ALLMA_MAIL_MAX_BYTES)));
	if (len == 0)
		MAIL_ERROR("the message is empty");
	hdrs = parse_headers(msg, end, &body, "the message");
	if (hdrs == NIL)
		MAIL_ERROR("the message has no header fields");

	if ((v = get_header(hdrs, "from")) != NULL)
	{
		/* the first mailbox of the field */
		List	   *boxes = allma_mime_header_addresses(v);

		if (boxes != NIL)
		{
			parse_mailbox(linitial(boxes), &m->sender_name, &m->sender_address);
			if (m->sender_address != NULL)
				m->from = m->sender_name ? psprintf("%s <%s>", m->sender_name, m->sender_address) :
					pstrdup(m->sender_address);
		}
	}
	m->to = address_list(get_header(hdrs, "to"), NIL);
	m->cc = address_list(get_header(hdrs, "cc"), NIL);
	{
		ListCell   *lc;

		foreach(lc, hdrs)
		{
			MailHeader *h = lfirst(lc);

			if (strcmp(h->name, "delivered-to") == 0 || strcmp(h->name, "x-original-to") == 0)
				m->delivered_to = address_list(h->value, m->delivered_to);
		}
	}
	if ((v = get_header(hdrs, "subject")) != NULL)
		m->subject = decode_words(v);
	if ((v = get_header(hdrs, "message-id")) != NULL && v[0] != '\0')
		m->message_id = pstrdup(v);
	if ((v = get_header(hdrs, "date")) != NULL && v[0] != '\0')
		m->date = pstrdup(v);

	walk_part(&st, hdrs, body, end, 0, "the message");
	if (m->text == NULL && m->html != NULL)
		m->text = html_to_text(m->html);
	return m;
}
