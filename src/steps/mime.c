/*-------------------------------------------------------------------------
 *
 * mime.c
 *	  The MIME message builder of the EMAIL step.
 *
 * An EMAIL step's message as SMTP carries it (RFC 5322 with MIME): the
 * addresses of the rendered step's fields (a string, comma- or
 * semicolon-separated, or an array), header fields encoded when they are
 * not ASCII, the body as 8bit text (base64 when a line is too long for
 * SMTP), and attachments as a multipart/mixed message.  CRLF line ends
 * throughout.  Pure string building: no catalog access.
 *
 * IDENTIFICATION
 *	  src/steps/mime.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <time.h>

#include "common/base64.h"
#include "lib/stringinfo.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "jsonb_util.h"
#include "steps.h"

/*
 * split_addresses appends the addresses of s to out: separated by "," or
 * ";" outside quotes and angle brackets (so "Doe, Jane" <j@x> is one),
 * trimmed, empty ones skipped.  need_at: a piece without "@" is joined to
 * the next one (Allma's splitting of an EMAIL field, so that an unquoted
 * Doe, Jane <j@x> stays one address too).
 */
static List *
split_addresses(const char *s, List *out, bool need_at)
{
	const char *start = s;
	bool		quoted = false;
	int			angle = 0;
	bool		seen_at = false;	/* an "@" since start */

	for (const char *p = s;; p++)
	{
		if (*p == '@')
			seen_at = true;
		if (*p == '\\' && quoted && p[1] != '\0')
		{
			p++;
			continue;
		}
		if (*p == '"')
			quoted = !quoted;
		else if (!quoted && *p == '<')
			angle++;
		else if (!quoted && *p == '>' && angle > 0)
			angle--;
		if (*p != '\0' && !quoted && angle == 0 && (*p == ',' || *p == ';') &&
			need_at && !seen_at)
			continue;			/* "Doe, Jane <j@x>": not yet an address */
		if (*p == '\0' || (!quoted && angle == 0 && (*p == ',' || *p == ';')))
		{
			const char *b = start;
			const char *e = p;

			while (b < e && (*b == ' ' || *b == '\t'))
				b++;
			while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			if (e > b)
			{
				char	   *tok = pnstrdup(b, e - b);

				if (strchr(tok, '\r') || strchr(tok, '\n'))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("email address \"%s\" contains a line break", tok)));
				out = lappend(out, tok);
			}
			if (*p == '\0')
				break;
			start = p + 1;
			seen_at = false;
		}
	}
	return out;
}

List *
allma_mime_addresses(Jsonb *v)
{
	List	   *out = NIL;

	if (allma_jsonb_is_array(v))
	{
		ListCell   *lc;

		foreach(lc, allma_jsonb_array_elements(v))
			out = list_concat(out, allma_mime_addresses(lfirst(lc)));
	}
	else if (v != NULL)
		out = split_addresses(allma_jsonb_to_display_text(v), out, true);
	return out;
}

List *
allma_mime_header_addresses(const char *s)
{
	return split_addresses(s, NIL, false);
}

/*
 * allma_mime_address_valid: is a (as a field gives it: "addr" or
 * "Name <addr>") a usable mailbox?  The address needs a local part of
 * at most 64 bytes without spaces, controls or specials, and a domain of
 * at least two dot-separated labels of letters, digits and "-" (non-ASCII
 * allowed): what Allma's zod .email() accepts, roughly.
 */
bool
allma_mime_address_valid(const char *a)
{
	const char *lt = strchr(a, '<');
	const char *addr = a;
	const char *at;
	int			len;
	int			labels = 0;
	int			label_len = 0;

	if (lt != NULL)
	{
		const char *gt = strchr(lt, '>');

		if (gt == NULL || gt[1] != '\0' || strchr(lt + 1, '<') != NULL)
			return false;
		addr = pnstrdup(lt + 1, gt - lt - 1);
	}
	len = strlen(addr);
	at = strrchr(addr, '@');
	if (at == NULL || at == addr || at - addr > 64 || len > 254)
		return false;
	if (addr[0] == '.' || at[-1] == '.' || strstr(addr, "..") != NULL)
		return false;
	for (const char *p = addr; p < at; p++)
		if ((unsigned char) *p <= ' ' || *p == 0x7f || strchr("<>()[]\\,;:\"@", *p) != NULL)
			return false;
	for (const char *p = at + 1;; p++)
	{
		if (*p == '.' || *p == '\0')
		{
			if (label_len == 0 || p[-1] == '-')
				return false;
			labels++;
			label_len = 0;
			if (*p == '\0')
				break;
			continue;
		}
		if (!((unsigned char) *p >= 0x80 || isalnum((unsigned char) *p) ||
			  (*p == '-' && label_len > 0)))
			return false;
		label_len++;
		if (label_len > 63)
			return false;
	}
	return labels >= 2;
}

char *
allma_mime_join_addresses(List *list)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, list)
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", (char *) lfirst(lc));
	return buf.data;
}

/* the address part of "Name <addr>" or "addr" */
char *
allma_mime_bare_address(const char *a)
{
	const char *lt = strchr(a, '<');
	const char *gt = lt ? strchr(lt, '>') : NULL;

	if (lt && gt)
		return pnstrdup(lt + 1, gt - lt - 1);
	return pstrdup(a);
}

/* header text: RFC 2047 encoded when not plain ASCII */
char *
allma_mime_header_text(const char *s)
{
	bool		ascii = true;

	for (const char *p = s; *p; p++)
	{
		if ((unsigned char) *p >= 0x80)
			ascii = false;
		if (*p == '\r' || *p == '\n')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("email header text contains a line break")));
	}
	if (ascii)
		return pstrdup(s);
	{
		int			len = strlen(s);
		char	   *enc = palloc(pg_b64_enc_len(len) + 1);
		int			n = pg_b64_encode(s, len, enc, pg_b64_enc_len(len));

		enc[Max(n, 0)] = '\0';
		return psprintf("=?UTF-8?B?%s?=", enc);
	}
}

/*
 * display_name: a display name for a header: RFC 2047 encoded when not
 * ASCII (an encoded word is never quoted), quoted when it has specials
 * (Allma quotes fromName the same way), else as it is.
 */
static char *
display_name(const char *name)
{
	StringInfoData q;
	char	   *n = pstrdup(name);
	int			len;

	len = strlen(n);
	if (len >= 2 && n[0] == '"' && n[len - 1] == '"')
	{
		/* already quoted: its inside, unescaped */
		StringInfoData u;

		initStringInfo(&u);
		for (int i = 1; i < len - 1; i++)
		{
			if (n[i] == '\\' && i + 1 < len - 1)
				i++;
			appendStringInfoChar(&u, n[i]);
		}
		n = u.data;
	}
	for (const char *p = n; *p; p++)
		if ((unsigned char) *p >= 0x80)
			return allma_mime_header_text(n);
	if (strpbrk(n, "()<>[]:;@\\,.\"") == NULL)
		return allma_mime_header_text(n);
	initStringInfo(&q);
	appendStringInfoChar(&q, '"');
	for (const char *p = n; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			appendStringInfoChar(&q, '\\');
		appendStringInfoChar(&q, *p);
	}
	appendStringInfoChar(&q, '"');
	return allma_mime_header_text(q.data);	/* (checks for line breaks) */
}

/*
 * address_header: the value of an address header field: each "Name
 * <addr>" with its name encoded or quoted by display_name (not the whole
 * field encoded: encoded words may not hold addresses), joined by ", ".
 */
static char *
address_header(List *addrs)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, addrs)
	{
		const char *a = lfirst(lc);
		const char *lt = strchr(a, '<');

		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		if (lt != NULL && lt > a)
		{
			int			n = lt - a;

			while (n > 0 && (a[n - 1] == ' ' || a[n - 1] == '\t'))
				n--;
			if (n > 0)
			{
				appendStringInfo(&buf, "%s <%s>", display_name(pnstrdup(a, n)),
								 allma_mime_bare_address(a));
				continue;
			}
		}
		appendStringInfoString(&buf, allma_mime_header_text(lt ? psprintf("<%s>", allma_mime_bare_address(a)) : a));
	}
	return buf.data;
}

/* RFC 5322 date of now, in UTC */
static char *
mail_date(void)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t		now = timestamptz_to_time_t(GetCurrentTimestamp());
	struct tm	tm;

	gmtime_r(&now, &tm);
	return psprintf("%s, %02d %s %04d %02d:%02d:%02d +0000",
					days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
					tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* does the body look like HTML (a tag such as <p> or </div>)? */
static bool
looks_like_html(const char *body)
{
	for (const char *p = strchr(body, '<'); p; p = strchr(p + 1, '<'))
	{
		if ((isalpha((unsigned char) p[1]) || (p[1] == '/' && isalpha((unsigned char) p[2]))) &&
			strchr(p, '>') != NULL)
			return true;
	}
	return false;
}

/* append_base64: a transfer-encoding header, a blank line, data in base64 lines */
static void
append_base64(StringInfo msg, const char *data, int len)
{
	char	   *enc = palloc(pg_b64_enc_len(len) + 1);
	int			n = allma_b64_encode(data, len, enc, pg_b64_enc_len(len));

	appendStringInfoString(msg, "Content-Transfer-Encoding: base64\r\n\r\n");
	for (int i = 0; i < n; i += 76)
	{
		appendBinaryStringInfo(msg, enc + i, Min(76, n - i));
		appendStringInfoString(msg, "\r\n");
	}
}

/*
 * append_mail_body adds the body with CRLF line ends: as 8bit text, or in
 * base64 when a line is too long for SMTP (998 bytes).
 */
static void
append_mail_body(StringInfo msg, const char *body)
{
	int			line = 0;
	bool		long_line = false;

	for (const char *p = body; *p; p++)
	{
		line = (*p == '\n') ? 0 : line + 1;
		if (line > 990)
			long_line = true;
	}
	if (!long_line)
	{
		appendStringInfoString(msg, "Content-Transfer-Encoding: 8bit\r\n\r\n");
		for (const char *p = body; *p; p++)
		{
			if (*p == '\n' && (p == body || p[-1] != '\r'))
				appendStringInfoChar(msg, '\r');
			appendStringInfoChar(msg, *p);
		}
		appendStringInfoString(msg, "\r\n");
	}
	else
		append_base64(msg, body, strlen(body));
}

/*
 * append_custom_headers adds the step's customHeaders: an object of
 * name: value, or an array of {"name": ..., "value": ...}.
 */
static void
append_custom_headers(const char *step_id, StringInfo msg, Jsonb *headers)
{
	List	   *pairs = NIL;
	ListCell   *lc;

	JsonbValue	scalar;

	if (headers == NULL ||
		(allma_jsonb_scalar(headers, &scalar) && scalar.type == jbvNull))
		return;
	if (allma_jsonb_is_array(headers))
	{
		foreach(lc, allma_jsonb_array_elements(headers))
		{
			char	   *name = allma_jsonb_get_cstring(lfirst(lc), "name");
			char	   *value = allma_jsonb_get_cstring(lfirst(lc), "value");

			if (name == NULL || value == NULL)
				allma_step_raise_config_error(psprintf("EMAIL step \"%s\": each entry of customHeaders needs \"name\" and \"value\"",
													   step_id));
			pairs = lappend(pairs, list_make2(name, value));
		}
	}
	else if (allma_jsonb_is_object(headers))
	{
		foreach(lc, allma_jsonb_object_keys(headers))
			pairs = lappend(pairs, list_make2(lfirst(lc),
											  allma_jsonb_to_display_text(allma_jsonb_get(headers, lfirst(lc)))));
	}
	else
		allma_step_raise_config_error(psprintf("EMAIL step \"%s\": customHeaders must be an object or an array",
											   step_id));

	foreach(lc, pairs)
	{
		char	   *name = linitial(lfirst(lc));
		char	   *value = lsecond(lfirst(lc));

		for (const char *p = name; *p; p++)
			if (!(isalnum((unsigned char) *p) || *p == '-'))
				allma_step_raise_config_error(psprintf("EMAIL step \"%s\": invalid header name \"%s\" in customHeaders",
													   step_id, name));
		appendStringInfo(msg, "%s: %s\r\n", name, allma_mime_header_text(value));
	}
}

/*
 * allma_mime_build appends the message m to msg: its header fields, then
 * the body alone (text/plain, or text/html when it looks like HTML), or a
 * multipart/mixed of the body and the attachments in base64.  Header
 * values are RFC 2047 encoded when not plain ASCII; a line break in one, a
 * bad custom header or a body that contains the boundary is an error.
 */
void
allma_mime_build(AllmaMailMessage *m, StringInfo msg)
{
	const char *body = m->body;
	ListCell   *lc;

	if (m->from_name != NULL)
		appendStringInfo(msg, "From: %s <%s>\r\n", display_name(m->from_name),
						 allma_mime_bare_address(m->from));
	else
		appendStringInfo(msg, "From: %s\r\n", address_header(list_make1((char *) m->from)));
	appendStringInfo(msg, "To: %s\r\n", address_header(m->to));
	if (m->cc != NIL)
		appendStringInfo(msg, "Cc: %s\r\n", address_header(m->cc));
	if (m->reply_to != NIL)
		appendStringInfo(msg, "Reply-To: %s\r\n", address_header(m->reply_to));
	appendStringInfo(msg, "Subject: %s\r\n", allma_mime_header_text(m->subject ? m->subject : ""));
	appendStringInfo(msg, "Date: %s\r\n", mail_date());
	appendStringInfo(msg, "Message-ID: %s\r\n", m->message_id);
	append_custom_headers(m->step_id, msg, m->custom_headers);
	appendStringInfoString(msg, "MIME-Version: 1.0\r\n");
	if (m->attachments == NIL)
	{
		appendStringInfo(msg, "Content-Type: %s; charset=UTF-8\r\n",
						 looks_like_html(body) ? "text/html" : "text/plain");
		append_mail_body(msg, body);
	}
	else
	{
		/* the boundary cannot occur in base64 or in the body (checked) */
		const char *boundary = m->boundary;

		if (strstr(body, boundary) != NULL)
			allma_step_raise_config_error(psprintf("EMAIL step \"%s\": the body contains the MIME boundary",
												   m->step_id));
		appendStringInfo(msg, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary);
		appendStringInfo(msg, "--%s\r\n", boundary);
		appendStringInfo(msg, "Content-Type: %s; charset=UTF-8\r\n",
						 looks_like_html(body) ? "text/html" : "text/plain");
		append_mail_body(msg, body);
		foreach(lc, m->attachments)
		{
			AllmaMailAttachment *a = lfirst(lc);

			appendStringInfo(msg, "--%s\r\n", boundary);
			appendStringInfo(msg, "Content-Type: %s; name=\"%s\"\r\n", a->content_type, a->filename);
			appendStringInfo(msg, "Content-Disposition: attachment; filename=\"%s\"\r\n", a->filename);
			append_base64(msg, a->data, a->len);
		}
		appendStringInfo(msg, "--%s--\r\n", boundary);
	}
}
