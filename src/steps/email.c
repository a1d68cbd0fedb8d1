/*-------------------------------------------------------------------------
 *
 * email.c
 *	  The EMAIL step: rendering it, its attachments, its reply.
 *
 * The step's fields are rendered (from, fromName, to, cc, bcc, replyTo,
 * subject, body); the message is built here and sent by the worker through
 * libcurl's SMTP support after the pass committed (allma.smtp_url), like an
 * HTTP request: no transaction is open while the server is talked to.
 * Addresses may be a string (comma-separated) or an array.
 * The message itself is built by mime.c.
 *
 * IDENTIFICATION
 *	  src/steps/email.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

#include "defcheck.h"
#include "jsonb_util.h"
#include "llm/provider.h"
#include "path.h"
#include "secret.h"
#include "steps.h"
#include "template.h"
#include "modules/aws.h"

/* larger messages are not copied into the path's stored request */
#define MAIL_STORED_MESSAGE_MAX		(64 * 1024)

/* Allma's limit for the attachments of one message (SES raw) */
#define MAIL_ATTACHMENTS_MAX_BYTES	(7 * 1024 * 1024)

/* the attachments' total so far may not exceed Allma's limit */
static void
check_attachments_size(StepRun *run, int64 total)
{
	if (total > MAIL_ATTACHMENTS_MAX_BYTES)
		allma_step_raise_error(ALLMA_ERR_PERMANENT,
							   psprintf("EMAIL step \"%s\": attachments exceed %d bytes",
										run->step->id, MAIL_ATTACHMENTS_MAX_BYTES),
							   allma_jsonb_empty_object());
}

/*
 * s3_attachment: an attachment whose s3Pointer names an object of a bucket
 * (src/modules/s3.c), read as the role that started the execution, in the
 * caller's memory context
 */
static AllmaMailAttachment *
s3_attachment(StepRun *run, const char *filename, Jsonb *pointer, MemoryContext cxt)
{
	char	   *ctype = NULL;
	bytea	   *content = allma_object_read(pointer, &run->ps->execution_id, run->ps->run_as, &ctype);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	AllmaMailAttachment *a = palloc(sizeof(AllmaMailAttachment));

	a->filename = allma_mime_header_text(filename);
	a->content_type = (ctype == NULL || strpbrk(ctype, "\r\n\"")) ? "application/octet-stream" : pstrdup(ctype);
	a->len = VARSIZE_ANY_EXHDR(content);
	a->data = palloc(a->len + 1);
	memcpy(a->data, VARDATA_ANY(content), a->len);
	MemoryContextSwitchTo(old);
	return a;
}

/*
 * email_attachments reads the rendered step's attachments (or the array at
 * attachmentsPath in the context): each {filename, filePointer: {fileId}}
 * names a file this execution stored with FILE_DOWNLOAD; Allma's
 * {filename, s3Pointer} an object of a bucket (s3_attachment).
 */
/* a UUID as FILE_DOWNLOAD gives it: 8-4-4-4-12 hex digits, or 32 without hyphens */
static bool
looks_like_uuid(const char *s)
{
	size_t		len = strlen(s);

	if (len != 36 && len != 32)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		bool		hyphen = len == 36 && (i == 8 || i == 13 || i == 18 || i == 23);

		if (hyphen ? s[i] != '-' : !isxdigit((unsigned char) s[i]))
			return false;
	}
	return true;
}

static List *
email_attachments(StepRun *run, Jsonb *def)
{
	Jsonb	   *list = allma_jsonb_get(def, "attachments");
	/* as defined: rendering the step turns a "$.path" string into the value it names */
	char	   *path = allma_jsonb_get_cstring(run->step->def, "attachmentsPath");
	List	   *out = NIL;
	int64		total = 0;
	ListCell   *lc;
	MemoryContext outer = CurrentMemoryContext;

	if (path != NULL)
		list = allma_path_get(run->ps->context, path);
	if (list == NULL || !allma_jsonb_is_array(list))
	{
		if (path != NULL && list != NULL)
			allma_step_raise_config_error(psprintf("EMAIL step \"%s\": attachmentsPath %s is not an array",
												   run->step->id, path));
		return NIL;
	}
	SPI_connect();
	foreach(lc, allma_jsonb_array_elements(list))
	{
		Jsonb	   *att = lfirst(lc);
		char	   *filename = allma_jsonb_get_cstring(att, "filename");
		Jsonb	   *ptr = allma_jsonb_get(att, "filePointer");
		char	   *file_id = allma_jsonb_is_object(ptr) ? allma_jsonb_get_cstring(ptr, "fileId") :
			(ptr ? allma_jsonb_to_display_text(ptr) : NULL);
		AllmaMailAttachment *a;
		Datum		args[2];
		Oid			types[2] = {UUIDOID, UUIDOID};
		bool		isnull;
		bytea	   *content;

		if (filename == NULL || filename[0] == '\0' || strpbrk(filename, "\"\\\r\n") != NULL)
			allma_step_raise_config_error(psprintf("EMAIL step \"%s\": an attachment needs a filename without quotes, backslashes or line breaks",
												   run->step->id));
		if (file_id == NULL && allma_jsonb_get(att, "s3Pointer") != NULL)
		{
			a = s3_attachment(run, filename, allma_jsonb_get(att, "s3Pointer"), outer);
			total += a->len;
			check_attachments_size(run, total);
			out = lappend(out, a);
			continue;
		}
		if (file_id == NULL)
			allma_step_raise_config_error(psprintf(allma_jsonb_get(att, "s3Pointer") ?
												   "EMAIL step \"%s\": attachment \"%s\" points into S3, which allma does not have; store the file with FILE_DOWNLOAD and give its filePointer" :
												   "EMAIL step \"%s\": attachment \"%s\" has no filePointer",
												   run->step->id, filename));
		if (file_id[0] == '\0')
			allma_step_raise_config_error(psprintf("EMAIL step \"%s\": attachment \"%s\": filePointer.fileId is empty",
												   run->step->id, filename));
		if (!looks_like_uuid(file_id))
			allma_step_raise_config_error(psprintf("EMAIL step \"%s\": attachment \"%s\": filePointer.fileId \"%s\" is not a file id (a UUID)",
												   run->step->id, filename, file_id));
		args[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(file_id));
		args[1] = UUIDPGetDatum(&run->ps->execution_id);
		/* not read-only: a file stored earlier in this pass must be seen */
		if (SPI_execute_with_args("SELECT content, coalesce(content_type, 'application/octet-stream') "
								  "FROM allma.files WHERE file_id = $1 AND execution_id = $2",
								  2, types, args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "allma: could not read allma.files");
		if (SPI_processed == 0)
			allma_step_raise_config_error(psprintf("EMAIL step \"%s\": attachment \"%s\": file %s is not a file of this execution",
												   run->step->id, filename, file_id));
		content = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		{
			char	   *ctype = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
			MemoryContext spicxt = MemoryContextSwitchTo(outer);

			a = palloc(sizeof(AllmaMailAttachment));
			a->filename = allma_mime_header_text(filename);
			a->content_type = strpbrk(ctype, "\r\n\"") ? "application/octet-stream" : pstrdup(ctype);
			a->len = VARSIZE_ANY_EXHDR(content);
			a->data = palloc(a->len + 1);
			memcpy(a->data, VARDATA_ANY(content), a->len);
			MemoryContextSwitchTo(spicxt);
		}
		total += a->len;
		check_attachments_size(run, total);
		MemoryContextSwitchTo(outer);
		out = lappend(out, a);
	}
	SPI_finish();
	return out;
}

/* s without leading and trailing white space (s is changed) */
static char *
trim_copy(char *s)
{
	int			len;

	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	len = strlen(s);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' ||
					   s[len - 1] == '\r' || s[len - 1] == '\n'))
		s[--len] = '\0';
	return s;
}

/*
 * email_addresses: the addresses of a rendered address field, each
 * checked (a configuration error naming the step, the field and the
 * address).  An array is a list; so is a string holding the JSON text of
 * an array (what "{{flow_variables.recipients}}" renders an array into,
 * as Allma parses it); any other string is split at "," and ";".
 */
static List *
email_addresses(StepRun *run, Jsonb *def, const char *field)
{
	Jsonb	   *v = allma_jsonb_get(def, field);
	JsonbValue	sv;
	List	   *list;
	ListCell   *lc;

	if (v != NULL && allma_jsonb_scalar(v, &sv) && sv.type == jbvString)
	{
		char	   *s = trim_copy(pnstrdup(sv.val.string.val, sv.val.string.len));
		int			len = strlen(s);
		Jsonb	   *arr;

		if (len >= 2 && s[0] == '[' && s[len - 1] == ']' &&
			allma_llm_parse_json_soft(s, len, &arr) && allma_jsonb_is_array(arr))
			v = arr;
	}
	list = allma_mime_addresses(v);
	foreach(lc, list)
	{
		char	   *a = lfirst(lc);

		if (!allma_mime_address_valid(a))
			allma_step_raise_config_error(psprintf("EMAIL step \"%s\": \"%s\" has an invalid email address \"%s\"",
												   run->step->id, field, a));
	}
	return list;
}

/*
 * mail_token: the attempt's idempotency key between prefix and suffix, with
 * "/" and ":" made "." (the Message-ID and the MIME boundary)
 */
static char *
mail_token(StepRun *run, const char *prefix, const char *suffix)
{
	char	   *token = psprintf("%s%s%s", prefix,
								 allma_step_idempotency_key(run->ps, run->step), suffix);

	for (char *p = token; *p; p++)
		if (*p == '/' || *p == ':')
			*p = '.';
	return token;
}

/*
 * allma_email_step_start renders the step (the whole definition is a template, like
 * Allma's), builds the message and leaves it as the step's request; the
 * worker sends it after the pass commits.
 */
Jsonb *
allma_email_step_start(StepRun *run)
{
	Jsonb	   *tctx = allma_step_template_context(run);
	Jsonb	   *def = allma_template_render_value(run->step->def, tctx);
	char	   *from = allma_jsonb_get_cstring(def, "from");
	char	   *from_name = allma_jsonb_get_cstring(def, "fromName");
	List	   *to;
	List	   *cc;
	List	   *bcc;
	List	   *reply_to;
	char	   *subject = allma_jsonb_get_cstring(def, "subject");
	char	   *body = allma_jsonb_get_cstring(def, "body");
	char	   *message_id;
	char	   *password = NULL;
	char	   *error = NULL;
	char	   *boundary;
	AllmaMailMessage mail;
	StringInfoData msg;
	Jsonb	   *rcpt = allma_jsonb_empty_array();
	Jsonb	   *req = allma_jsonb_empty_object();
	Jsonb	   *rendered = allma_jsonb_empty_object();
	ListCell   *lc;
	List	   *attachments;
	MemoryContext oldcxt;

	if (allma_smtp_url == NULL || allma_smtp_url[0] == '\0')
		allma_step_raise_config_error(psprintf("EMAIL step \"%s\" cannot send: allma.smtp_url is not set",
											   run->step->id));
	if (!allma_http_check_mail_url(allma_smtp_url, &error))
		allma_step_raise_config_error(psprintf("EMAIL step \"%s\" cannot send: allma.smtp_url: %s",
											   run->step->id, error));
	/* Allma's checks of the rendered fields: no MAIL FROM:<>, no RCPT of a fragment */
	if (from != NULL)
		from = trim_copy(from);
	if (from == NULL || from[0] == '\0')
		allma_step_raise_config_error(psprintf("EMAIL step \"%s\": \"from\" is empty after rendering",
											   run->step->id));
	if (!allma_mime_address_valid(from))
		allma_step_raise_config_error(psprintf("EMAIL step \"%s\": \"from\" is not a valid email address: \"%s\"",
											   run->step->id, from));
	to = email_addresses(run, def, "to");
	cc = email_addresses(run, def, "cc");
	bcc = email_addresses(run, def, "bcc");
	reply_to = email_addresses(run, def, "replyTo");
	if (to == NIL)
		allma_step_raise_config_error(psprintf("EMAIL step \"%s\": \"to\" has no address after rendering",
											   run->step->id));
	attachments = email_attachments(run, def);
	if (allma_smtp_username != NULL && allma_smtp_username[0] != '\0')
	{
		AllmaSecretUse use = allma_step_secret_use(run, allma_smtp_url);

		password = allma_secret_get_for(allma_smtp_password_secret, &use);
	}

	message_id = mail_token(run, "<", "@allma>");
	if (body == NULL)
		body = "";
	/* the boundary cannot occur in base64 or in the body (mime.c checks) */
	boundary = mail_token(run, "=_allma_", "");

	mail.step_id = run->step->id;
	mail.from = from;
	mail.from_name = from_name;
	mail.to = to;
	mail.cc = cc;
	mail.reply_to = reply_to;
	mail.subject = subject;
	mail.body = body;
	mail.message_id = message_id;
	mail.boundary = boundary;
	mail.custom_headers = allma_jsonb_get(def, "customHeaders");
	mail.attachments = attachments;
	initStringInfo(&msg);
	allma_mime_build(&mail, &msg);

	foreach(lc, list_concat(list_concat(list_copy(to), cc), bcc))
		rcpt = allma_jsonb_array_append(rcpt, allma_jsonb_string(allma_mime_bare_address(lfirst(lc))));

	req = allma_jsonb_set_key(req, "url", allma_jsonb_string(allma_smtp_url));
	req = allma_jsonb_set_key(req, "mailFrom", allma_jsonb_string(allma_mime_bare_address(from)));
	req = allma_jsonb_set_key(req, "rcpt", rcpt);
	/* a large message (attachments) is kept in memory only, like credentials */
	if (msg.len <= MAIL_STORED_MESSAGE_MAX)
		req = allma_jsonb_set_key(req, "message", allma_jsonb_string(msg.data));
	else
		req = allma_jsonb_set_key(req, "messageBytes", allma_jsonb_int(msg.len));
	req = allma_jsonb_set_key(req, "messageId", allma_jsonb_string(message_id));
	req = allma_jsonb_set_key(req, "idempotencyKey",
							  allma_jsonb_string(allma_step_idempotency_key(run->ps, run->step)));

	rendered = allma_jsonb_set_key(rendered, "from", allma_jsonb_string(from));
	if (from_name)
		rendered = allma_jsonb_set_key(rendered, "fromName", allma_jsonb_string(from_name));
	rendered = allma_jsonb_set_key(rendered, "to", allma_jsonb_string(allma_mime_join_addresses(to)));
	if (cc != NIL)
		rendered = allma_jsonb_set_key(rendered, "cc", allma_jsonb_string(allma_mime_join_addresses(cc)));
	if (bcc != NIL)
		rendered = allma_jsonb_set_key(rendered, "bcc", allma_jsonb_string(allma_mime_join_addresses(bcc)));
	if (reply_to != NIL)
		rendered = allma_jsonb_set_key(rendered, "replyTo", allma_jsonb_string(allma_mime_join_addresses(reply_to)));
	rendered = allma_jsonb_set_key(rendered, "subject", allma_jsonb_string(subject ? subject : ""));
	rendered = allma_jsonb_set_key(rendered, "body", allma_jsonb_string(body));
	req = allma_jsonb_set_key(req, "rendered", rendered);

	oldcxt = MemoryContextSwitchTo(run->pathcxt);
	run->ps->io_request = (Jsonb *) palloc(VARSIZE(req));
	memcpy(run->ps->io_request, req, VARSIZE(req));
	run->ps->io_send_password = password ? pstrdup(password) : NULL;
	run->ps->io_send_body = msg.len <= MAIL_STORED_MESSAGE_MAX ? NULL : pstrdup(msg.data);
	MemoryContextSwitchTo(oldcxt);
	run->io = true;
	return NULL;
}

Jsonb *
allma_email_step_complete(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;
	Jsonb	   *prev = run->ps->prev_request;
	Jsonb	   *out;

	/*
	 * A 5xx reply (recipient or sender refused, message rejected) and a
	 * failed login are permanent; 4xx replies ask to try later, and
	 * connection failures and timeouts are transient too.
	 */
	if (c->error != NULL)
	{
		Jsonb	   *details = allma_jsonb_set_key(NULL, "curlCode", allma_jsonb_int(c->curl_code));
		bool		permanent = (c->status >= 500 && c->status < 600) ||
			c->curl_code == 67 /* CURLE_LOGIN_DENIED */ ;

		if (c->status > 0)
			details = allma_jsonb_set_key(details, "smtpReplyCode", allma_jsonb_int(c->status));
		allma_step_raise_error(permanent ? ALLMA_ERR_PERMANENT : ALLMA_ERR_TRANSIENT,
							   psprintf("sending email failed: %s", c->error), details);
	}
	out = allma_jsonb_set_key(NULL, "messageId", allma_jsonb_get(prev, "messageId"));
	/* Allma's name for it (SES), so flows reading it keep working */
	out = allma_jsonb_set_key(out, "sesMessageId", allma_jsonb_get(prev, "messageId"));
	return allma_jsonb_set_key(out, "renderedEmail", allma_jsonb_get(prev, "rendered"));
}

/* ----------------------------------------------------------------
 * The definition check
 * ----------------------------------------------------------------
 */

/* EMAIL: the address, subject and body fields are rendered templates */
void
allma_check_email(AllmaChecker *ck, JsonbContainer *step)
{
	static const char *const rendered[] = {
		"from", "fromName", "to", "cc", "bcc", "replyTo", "subject", "body",
		"customHeaders", "attachments", "attachmentsPath", NULL
	};
	JsonbValue	v;
	JsonbContainer *attachments;
	int			i;

	allma_def_get_string(ck, step, NULL, "from", !ck->inherits);
	allma_def_get_string(ck, step, NULL, "fromName", false);
	allma_def_check_string_or_strings(ck, step, NULL, "to", !ck->inherits);
	allma_def_check_string_or_strings(ck, step, NULL, "cc", false);
	allma_def_check_string_or_strings(ck, step, NULL, "bcc", false);
	allma_def_check_string_or_strings(ck, step, NULL, "replyTo", false);
	allma_def_get_string(ck, step, NULL, "subject", !ck->inherits);
	allma_def_get_string(ck, step, NULL, "body", !ck->inherits);
	if (allma_def_lookup(step, "customHeaders", &v) && v.type != jbvString &&
		!allma_def_is_array(&v) && !allma_def_is_object(&v))
		allma_def_error_type(ck, "customHeaders", "an array, an object or a string", &v);

	attachments = allma_def_get_array(ck, step, NULL, "attachments", false);
	if (attachments != NULL)
	{
		int			n;
		AllmaDefMember	   *elems = allma_def_members(attachments, &n);

		if (allma_def_lookup(step, "attachmentsPath", &v))
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
					 errmsg("step \"%s\" sets both attachments and attachmentsPath",
							ck->step)));
		for (i = 0; i < n; i++)
		{
			char	   *field = allma_def_element_name("attachments", i);
			JsonbContainer *a;
			JsonbValue	ptr;

			if (!allma_def_is_object(&elems[i].value))
				allma_def_error_type(ck, field, "an object", &elems[i].value);
			a = elems[i].value.val.binary.data;
			allma_def_get_nonempty_string(ck, a, field, "filename", true);
			/* Allma's s3Pointer, or allma's filePointer (FILE_DOWNLOAD's output) */
			if (allma_def_lookup(a, "filePointer", &ptr))
			{
				if (ptr.type != jbvString && !allma_def_is_object(&ptr))
					allma_def_error_type(ck, allma_def_member_name(field, "filePointer"),
										 "an object or a string", &ptr);
				continue;
			}
			if (!allma_def_lookup(a, "s3Pointer", &ptr))
				allma_def_error_missing(ck, allma_def_member_name(field, "filePointer"),
										"An attachment names a file stored by FILE_DOWNLOAD: {\"filePointer\": {\"fileId\": ...}}.");
			if (ptr.type != jbvString && !allma_def_is_object(&ptr))
				allma_def_error_type(ck, allma_def_member_name(field, "s3Pointer"),
									 "an object or a string", &ptr);
		}
	}
	allma_def_get_string(ck, step, NULL, "attachmentsPath", false);

	for (i = 0; rendered[i] != NULL; i++)
		allma_def_check_templates_field(ck, step, NULL, rendered[i]);
}
