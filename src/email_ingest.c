/*-------------------------------------------------------------------------
 *
 * email_ingest.c
 *	  The email trigger: allma_deliver_email routes an inbound message to
 *	  the published flows whose EMAIL_START_POINT matches it and starts
 *	  them, as Allma's inbound SES trigger (email-ingress) does.
 *
 * Routing (docs/email-triggers.md):
 *	  - the message's recipients are its To, Cc, Delivered-To and
 *		X-Original-To addresses (compared without regard to case);
 *	  - a step matches a recipient when its emailAddress (rendered with the
 *		flow version's flowVariables) is that address;
 *	  - among the steps matching a recipient, those with a keyword that the
 *		text body contains start; if there are none, those without a
 *		keyword (or with "#DEFAULT") start;
 *	  - each (flow, step) starts once per message, at the EMAIL_START_POINT
 *		step, with input {"triggeringEmail": {...}} (Allma's shape, see
 *		mail_json) and triggerSource "EmailTrigger:<recipient>";
 *	  - triggerMessagePattern is a regular expression (PostgreSQL's, nearly
 *		JavaScript's for common patterns) applied to the text body; its
 *		first group becomes triggeringEmail.triggerPattern.  It does not
 *		decide whether the flow starts (as in Allma).
 *
 * Security: EXECUTE is granted to allma_admin only (a mail gateway role is
 * made a member, or granted EXECUTE).  Each execution is started as the
 * flow's owner, through allma_start_flow's own checks (START on the flow),
 * so it runs with the owner's privileges, never the gateway's; a flow whose
 * owner no longer exists or may not run allma_start_flow is skipped with a
 * WARNING.  With a Message-ID, the execution id is derived from it, the
 * flow and the step: delivering the same message again starts nothing new.
 * Attachments are stored as files of each started execution (allma.files,
 * visible as the execution's files) and given as filePointer; with
 * allma.email_attachments_bucket set, also once per message as objects of
 * that bucket, written as the caller, and given as Allma's s3Location.
 *
 * IDENTIFICATION
 *	  src/email_ingest.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/md5.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"

#include "email_ingest.h"
#include "jsonb_util.h"
#include "mail_parse.h"
#include "owner.h"
#include "template.h"

PG_FUNCTION_INFO_V1(allma_deliver_email);
PG_FUNCTION_INFO_V1(allma_parse_email);

/* allma.email_attachments_bucket: where attachments also go ("" = nowhere) */
char	   *allma_email_attachments_bucket = NULL;

void
allma_email_ingest_define_gucs(void)
{
	DefineCustomStringVariable("allma.email_attachments_bucket",
							   "Sets the bucket allma_deliver_email stores attachments in.",
							   "Empty: attachments are only files of the started executions. "
							   "The caller of allma_deliver_email writes the objects (it needs INSERT on the bucket).",
							   &allma_email_attachments_bucket, "", PGC_SUSET, 0, NULL, NULL, NULL);
}

/* allma_start_flow (api.c), called as the flow's owner */
extern Datum allma_start_flow(PG_FUNCTION_ARGS);

/* one EMAIL_START_POINT step of a published flow version */
typedef struct EmailTrigger
{
	char	   *flow_id;
	char	   *step_id;
	Oid			owner;
	bool		owner_can_start;
	char	   *owner_name;
	char	   *address;		/* rendered, bare */
	char	   *keyword;		/* NULL: the default of its address */
	char	   *pattern;		/* triggerMessagePattern or NULL */
	char	   *recipient;		/* the recipient it matched (when chosen) */
} EmailTrigger;

/* ----------------------------------------------------------------
 * triggerMessagePattern
 * ----------------------------------------------------------------
 */

static bool
compile_pattern(const char *pattern, regex_t *re, char **why)
{
	int			len = strlen(pattern);
	pg_wchar   *w = palloc((len + 1) * sizeof(pg_wchar));
	int			wlen = pg_mb2wchar_with_len(pattern, w, len);
	int			rc = pg_regcomp(re, w, wlen, REG_ADVANCED, DEFAULT_COLLATION_OID);

	if (rc != REG_OKAY)
	{
		char		buf[256];

		pg_regerror(rc, re, buf, sizeof(buf));
		*why = pstrdup(buf);
		return false;
	}
	return true;
}

bool
allma_email_pattern_check(const char *pattern, char **why)
{
	regex_t		re;

	if (!compile_pattern(pattern, &re, why))
		return false;
	pg_regfree(&re);
	return true;
}

/* group 1 of the pattern's first match in text, or NULL */
static char *
pattern_group(const EmailTrigger *t, const char *text)
{
	regex_t		re;
	char	   *why;
	int			len = strlen(text);
	pg_wchar   *w;
	int			wlen;
	regmatch_t	pm[2];
	char	   *out = NULL;

	if (!compile_pattern(t->pattern, &re, &why))
	{
		ereport(WARNING,
				(errmsg("flow \"%s\" step \"%s\": triggerMessagePattern is not a valid regular expression: %s",
						t->flow_id, t->step_id, why),
				 errdetail("The flow starts without triggeringEmail.triggerPattern.")));
		return NULL;
	}
	w = palloc((len + 1) * sizeof(pg_wchar));
	wlen = pg_mb2wchar_with_len(text, w, len);
	if (pg_regexec(&re, w, wlen, 0, NULL, 2, pm, 0) == REG_OKAY &&
		re.re_nsub >= 1 && pm[1].rm_so >= 0 && pm[1].rm_eo > pm[1].rm_so)
	{
		int			n = pm[1].rm_eo - pm[1].rm_so;

		out = palloc(n * pg_database_encoding_max_length() + 1);
		pg_wchar2mb_with_len(w + pm[1].rm_so, out, n);
	}
	pg_regfree(&re);
	return out;
}

/* ----------------------------------------------------------------
 * The message as JSON
 * ----------------------------------------------------------------
 */

static Jsonb *
string_array(List *list)
{
	Jsonb	   *arr = allma_jsonb_empty_array();
	ListCell   *lc;

	foreach(lc, list)
		arr = allma_jsonb_array_append(arr, allma_jsonb_string(lfirst(lc)));
	return arr;
}

static Jsonb *
set_string(Jsonb *obj, const char *key, const char *value)
{
	return value ? allma_jsonb_set_key(obj, key, allma_jsonb_string(value)) : obj;
}

/*
 * mail_json: Allma's triggeringEmail for recipient (from, senderName,
 * senderFullEmail, senderEmailPrefix, to, subject, body, htmlBody,
 * attachments, triggerPattern; absent members left out, as JSON.stringify
 * does), plus allma's messageId, date and cc.  recipient NULL: "to" is the
 * To addresses (allma_parse_email).  file_ids: the attachments' files.
 */
static Jsonb *
mail_json(AllmaParsedMail *m, const char *recipient, const char *trigger_pattern,
		  pg_uuid_t *file_ids, char **s3_keys)
{
	Jsonb	   *o = allma_jsonb_empty_object();
	Jsonb	   *atts = allma_jsonb_empty_array();
	ListCell   *lc;
	int			i = 0;

	o = set_string(o, "from", m->from);
	o = set_string(o, "senderName", m->sender_name);
	o = set_string(o, "senderFullEmail", m->sender_address);
	if (m->sender_address != NULL)
		o = allma_jsonb_set_key(o, "senderEmailPrefix",
								allma_jsonb_string(pnstrdup(m->sender_address,
															strchr(m->sender_address, '@') - m->sender_address)));
	if (recipient != NULL)
		o = allma_jsonb_set_key(o, "to", allma_jsonb_string(recipient));
	else
		o = allma_jsonb_set_key(o, "to", string_array(m->to));
	o = allma_jsonb_set_key(o, "cc", string_array(m->cc));
	o = set_string(o, "subject", m->subject);
	o = allma_jsonb_set_key(o, "body", allma_jsonb_string(m->text ? m->text : ""));
	o = set_string(o, "htmlBody", m->html);
	foreach(lc, m->attachments)
	{
		AllmaMailInAttachment *a = lfirst(lc);
		Jsonb	   *j = allma_jsonb_empty_object();

		j = allma_jsonb_set_key(j, "filename",
								allma_jsonb_string(a->filename ? a->filename : psprintf("attachment-%d", i)));
		j = allma_jsonb_set_key(j, "contentType", allma_jsonb_string(a->content_type));
		j = allma_jsonb_set_key(j, "size", allma_jsonb_int(a->len));
		j = set_string(j, "contentId", a->content_id);
		j = allma_jsonb_set_key(j, "disposition", allma_jsonb_string(a->disposition));
		if (file_ids != NULL)
		{
			char	   *id = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&file_ids[i])));

			j = allma_jsonb_set_key(j, "filePointer",
									allma_jsonb_set_key(NULL, "fileId", allma_jsonb_string(id)));
		}
		if (s3_keys != NULL)
		{
			Jsonb	   *loc = allma_jsonb_set_key(NULL, "bucket",
												  allma_jsonb_string(allma_email_attachments_bucket));

			j = allma_jsonb_set_key(j, "s3Location",
									allma_jsonb_set_key(loc, "key", allma_jsonb_string(s3_keys[i])));
		}
		atts = allma_jsonb_array_append(atts, j);
		i++;
	}
	o = allma_jsonb_set_key(o, "attachments", atts);
	o = set_string(o, "triggerPattern", trigger_pattern);
	o = set_string(o, "messageId", m->message_id);
	o = set_string(o, "date", m->date);
	return o;
}

/* a name-based UUID (version 3: MD5) of the parts, "\x1f"-separated */
static pg_uuid_t *
name_uuid(const char *a, const char *b, const char *c, int n)
{
	char	   *name = psprintf("allma-email\x1f%s\x1f%s\x1f%s\x1f%d", a, b, c, n);
	pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));
	const char *err;

	if (!pg_md5_binary(name, strlen(name), u->data, &err))
		elog(ERROR, "could not compute MD5: %s", err);
	u->data[6] = (u->data[6] & 0x0f) | 0x30;
	u->data[8] = (u->data[8] & 0x3f) | 0x80;
	return u;
}

/* ----------------------------------------------------------------
 * Routing
 * ----------------------------------------------------------------
 */

/* the bare address of "Name <addr>" or "addr", trimmed */
static char *
bare_address(const char *a)
{
	const char *lt = strchr(a, '<');
	const char *gt = lt ? strchr(lt, '>') : NULL;
	const char *s = lt && gt ? lt + 1 : a;
	int			len = lt && gt ? gt - lt - 1 : (int) strlen(a);

	while (len > 0 && (*s == ' ' || *s == '\t'))
		s++, len--;
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	return pnstrdup(s, len);
}

/* the EMAIL_START_POINT steps of all published flow versions */
static List *
load_triggers(void)
{
	AllmaAsOwner st;
	List	   *out = NIL;
	MemoryContext outer = CurrentMemoryContext;

	allma_owner_begin(&st);
	allma_owner_exec("SELECT f.flow_id, s.key, f.owner::oid, "
					 "       r.oid IS NOT NULL AND pg_catalog.has_function_privilege(r.oid, "
					 "         'pg_catalog.allma_start_flow(text, jsonb, jsonb)', 'EXECUTE'), "
					 "       coalesce(r.rolname::text, f.owner::oid::text), "
					 "       s.value, coalesce(v.definition->'flowVariables', '{}') "
					 "FROM allma.flows f "
					 "JOIN allma.flow_versions v ON v.flow_id = f.flow_id AND v.version = f.published_version "
					 "CROSS JOIN LATERAL jsonb_each(v.definition->'steps') s "
					 "LEFT JOIN pg_catalog.pg_roles r ON r.oid = f.owner::oid "
					 "WHERE s.value->>'stepType' = 'EMAIL_START_POINT' "
					 "ORDER BY f.flow_id COLLATE \"C\", s.key COLLATE \"C\"",
					 0, NULL, NULL, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext spicxt = MemoryContextSwitchTo(outer);
		EmailTrigger *t = palloc0(sizeof(EmailTrigger));
		Jsonb	   *step = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 6, &isnull));
		Jsonb	   *vars = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 7, &isnull));
		Jsonb	   *ctx = allma_jsonb_set_key(NULL, "flow_variables", vars);
		char	   *address = allma_jsonb_get_cstring(step, "emailAddress");
		char	   *keyword = allma_jsonb_get_cstring(step, "keyword");

		t->flow_id = SPI_getvalue(tup, desc, 1);
		t->step_id = SPI_getvalue(tup, desc, 2);
		t->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		t->owner_can_start = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		t->owner_name = SPI_getvalue(tup, desc, 5);
		MemoryContextSwitchTo(spicxt);
		if (address == NULL || address[0] == '\0')
			continue;
		/* addresses and keywords may be templates of the flow variables */
		MemoryContextSwitchTo(outer);
		if (allma_template_has_markup(address))
			address = allma_template_render(address, ctx);
		if (keyword != NULL && allma_template_has_markup(keyword))
			keyword = allma_template_render(keyword, ctx);
		t->address = bare_address(address);
		t->keyword = (keyword == NULL || keyword[0] == '\0' || strcmp(keyword, "#DEFAULT") == 0) ?
			NULL : keyword;
		t->pattern = allma_jsonb_get_cstring(step, "triggerMessagePattern");
		if (t->pattern != NULL && t->pattern[0] == '\0')
			t->pattern = NULL;
		out = lappend(out, t);
		MemoryContextSwitchTo(spicxt);
	}
	allma_owner_end(&st);
	return out;
}

/* the message's recipients, each once (first spelling kept) */
static List *
recipients_of(AllmaParsedMail *m)
{
	List	   *all = list_concat(list_concat(list_copy(m->to), m->cc), m->delivered_to);
	List	   *out = NIL;
	ListCell   *lc;

	foreach(lc, all)
	{
		char	   *a = lfirst(lc);
		ListCell   *lc2;
		bool		seen = false;

		foreach(lc2, out)
			if (pg_strcasecmp(lfirst(lc2), a) == 0)
				seen = true;
		if (!seen)
			out = lappend(out, a);
	}
	return out;
}

/*
 * route: the triggers to start, each once, in flow and step order, with
 * the recipient each matched (the first one)
 */
static List *
route(List *triggers, List *recipients, const char *text)
{
	List	   *chosen = NIL;
	ListCell   *rc;

	foreach(rc, recipients)
	{
		const char *r = lfirst(rc);
		List	   *keyword_hits = NIL;
		List	   *defaults = NIL;
		ListCell   *lc;

		foreach(lc, triggers)
		{
			EmailTrigger *t = lfirst(lc);

			if (pg_strcasecmp(t->address, r) != 0)
				continue;
			if (t->keyword == NULL)
				defaults = lappend(defaults, t);
			else if (strstr(text, t->keyword) != NULL)
				keyword_hits = lappend(keyword_hits, t);
		}
		foreach(lc, keyword_hits != NIL ? keyword_hits : defaults)
		{
			EmailTrigger *t = lfirst(lc);

			if (t->recipient != NULL)
				continue;		/* already chosen for an earlier recipient */
			t->recipient = pstrdup(r);
			chosen = lappend(chosen, t);
		}
	}
	/* in flow and step order (the order of triggers) */
	{
		List	   *ordered = NIL;
		ListCell   *lc;

		foreach(lc, triggers)
			if (list_member_ptr(chosen, lfirst(lc)))
				ordered = lappend(ordered, lfirst(lc));
		return ordered;
	}
}

/* an attachment's bytes as a bytea */
static bytea *
attachment_bytes(AllmaMailInAttachment *a)
{
	bytea	   *b = palloc(VARHDRSZ + a->len);

	SET_VARSIZE(b, VARHDRSZ + a->len);
	memcpy(VARDATA(b), a->data, a->len);
	return b;
}

/* start one trigger's flow as its owner; its execution id */
static pg_uuid_t *
start_trigger(AllmaParsedMail *m, EmailTrigger *t, char **s3_keys)
{
	Oid			save_userid;
	int			save_sec;
	pg_uuid_t  *exec_id;
	pg_uuid_t  *file_ids = NULL;
	int			natt = list_length(m->attachments);
	char	   *exec_text;
	Jsonb	   *input;
	Jsonb	   *options;
	Datum		result;

	exec_id = m->message_id ? name_uuid(t->flow_id, t->step_id, m->message_id, 0) :
		DatumGetUUIDP(DirectFunctionCall1(gen_random_uuid, (Datum) 0));
	exec_text = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(exec_id)));
	if (natt > 0)
	{
		file_ids = palloc(sizeof(pg_uuid_t) * natt);
		for (int i = 0; i < natt; i++)
			file_ids[i] = *name_uuid(exec_text, "file", "", i);
	}
	input = allma_jsonb_set_key(NULL, "triggeringEmail",
								mail_json(m, t->recipient,
										  t->pattern ? pattern_group(t, m->text ? m->text : "") : NULL,
										  file_ids, s3_keys));
	options = allma_jsonb_set_key(NULL, "startStepInstanceId", allma_jsonb_string(t->step_id));
	options = allma_jsonb_set_key(options, "triggerSource",
								  allma_jsonb_string(psprintf("EmailTrigger:%s", t->recipient)));
	options = allma_jsonb_set_key(options, "enableExecutionLogs", allma_jsonb_bool(true));
	options = allma_jsonb_set_key(options, "executionId", allma_jsonb_string(exec_text));

	/* as the flow's owner: allma_start_flow checks its START privilege */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(t->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	result = DirectFunctionCall3(allma_start_flow,
								 CStringGetTextDatum(t->flow_id),
								 JsonbPGetDatum(input), JsonbPGetDatum(options));
	SetUserIdAndSecContext(save_userid, save_sec);

	/* the attachments, as files of the execution (again: nothing new) */
	if (natt > 0)
	{
		AllmaAsOwner st;
		ListCell   *lc;
		int			i = 0;

		allma_owner_begin(&st);
		foreach(lc, m->attachments)
		{
			AllmaMailInAttachment *a = lfirst(lc);
			Oid			types[6] = {UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID, BYTEAOID};
			Datum		values[6];
			bytea	   *content = attachment_bytes(a);

			values[0] = result;
			values[1] = UUIDPGetDatum(&file_ids[i]);
			values[2] = CStringGetTextDatum(t->step_id);
			values[3] = CStringGetTextDatum(psprintf("email:%s/%d", m->message_id ? m->message_id : exec_text, i));
			values[4] = CStringGetTextDatum(a->content_type);
			values[5] = PointerGetDatum(content);
			allma_owner_exec("INSERT INTO allma.files (execution_id, file_id, step_id, url, content_type, "
							 "content, content_length) VALUES ($1, $2, $3, $4, $5, $6, length($6)) "
							 "ON CONFLICT DO NOTHING",
							 6, types, values, NULL, SPI_OK_INSERT);
			i++;
		}
		allma_owner_end(&st);
	}
	return DatumGetUUIDP(result);
}

/*
 * store_attachments writes the message's attachments into the bucket
 * allma.email_attachments_bucket names, as the caller (INSERT on the
 * bucket's table needed), at Allma's keys attachments/<message>/<n>/<name>
 * (<message>: the Message-ID's characters [A-Za-z0-9.@_-], else a random
 * uuid; <name>: the file name with other characters made "_"); an object
 * already there (a redelivery) is left as it is.  Returns the keys.
 */
static char **
store_attachments(AllmaParsedMail *m)
{
	const char *bucket = allma_email_attachments_bucket;
	Oid			rel = get_relname_relid(bucket, get_namespace_oid("allma_s3", true));
	char	  **keys = palloc(sizeof(char *) * list_length(m->attachments));
	char	   *msg;
	MemoryContext outer;
	ListCell   *lc;
	int			i = 0;

	if (!OidIsValid(rel))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("allma.email_attachments_bucket names bucket \"%s\", which does not exist", bucket),
				 errhint("Create it with allma_create_bucket, or set allma.email_attachments_bucket to ''.")));
	if (m->message_id != NULL)
	{
		msg = pstrdup(m->message_id);
		if (msg[0] == '<')
			msg++;
		if (msg[0] != '\0' && msg[strlen(msg) - 1] == '>')
			msg[strlen(msg) - 1] = '\0';
	}
	else
		msg = DatumGetCString(DirectFunctionCall1(uuid_out, DirectFunctionCall1(gen_random_uuid, (Datum) 0)));
	if (strlen(msg) > 200)
		msg[200] = '\0';
	for (char *c = msg; *c; c++)
		if (!isalnum((unsigned char) *c) && strchr(".@_-", *c) == NULL)
			*c = '_';

	outer = CurrentMemoryContext;
	SPI_connect();
	foreach(lc, m->attachments)
	{
		AllmaMailInAttachment *a = lfirst(lc);
		char	   *name = a->filename ? pstrdup(a->filename) : psprintf("attachment-%d", i);
		Oid			types[4] = {TEXTOID, BYTEAOID, TEXTOID, JSONBOID};
		Datum		values[4];
		bytea	   *content = attachment_bytes(a);

		if (strlen(name) > 200)
			name[200] = '\0';
		for (char *c = name; *c; c++)
			if (!isalnum((unsigned char) *c) && *c != '.' && *c != '-')
				*c = '_';
		keys[i] = MemoryContextStrdup(outer, psprintf("attachments/%s/%d/%s", msg, i, name));
		values[0] = CStringGetTextDatum(keys[i]);
		values[1] = PointerGetDatum(content);
		values[2] = CStringGetTextDatum(a->content_type);
		values[3] = JsonbPGetDatum(allma_jsonb_set_key(NULL, "originalName",
													   allma_jsonb_string(a->filename ? a->filename : name)));
		if (SPI_execute_with_args(psprintf("INSERT INTO allma_s3.%s (key, content, content_type, metadata) "
										   "VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING",
										   quote_identifier(bucket)),
								  4, types, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "allma: could not write to bucket %s", bucket);
		i++;
	}
	SPI_finish();
	return keys;
}

/*
 * allma_deliver_email(message text) RETURNS uuid[]: the executions started
 * for the message (empty when no flow matches).
 */
Datum
allma_deliver_email(PG_FUNCTION_ARGS)
{
	text	   *msg = PG_GETARG_TEXT_PP(0);
	AllmaParsedMail *m = allma_mail_parse(VARDATA_ANY(msg), VARSIZE_ANY_EXHDR(msg));
	List	   *triggers = load_triggers();
	List	   *chosen = route(triggers, recipients_of(m), m->text ? m->text : "");
	Datum	   *ids = palloc(sizeof(Datum) * Max(list_length(chosen), 1));
	int			n = 0;
	ListCell   *lc;
	bool		stored = false;
	char	  **s3_keys = NULL;

	foreach(lc, chosen)
	{
		EmailTrigger *t = lfirst(lc);

		if (!t->owner_can_start)
		{
			ereport(WARNING,
					(errmsg("email to %s does not start flow \"%s\": its owner %s may not start flows",
							t->recipient, t->flow_id, t->owner_name),
					 errhint("The owner needs EXECUTE on allma_start_flow (membership in allma_user).")));
			continue;
		}
		if (!stored && m->attachments != NIL && allma_email_attachments_bucket != NULL &&
			allma_email_attachments_bucket[0] != '\0')
			s3_keys = store_attachments(m);
		stored = true;
		ids[n++] = UUIDPGetDatum(start_trigger(m, t, s3_keys));
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(ids, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
}

/*
 * allma_parse_email(message text) RETURNS jsonb: the message as a flow
 * would see it in triggeringEmail ("to" is the To addresses; no
 * triggerPattern, no filePointer).
 */
Datum
allma_parse_email(PG_FUNCTION_ARGS)
{
	text	   *msg = PG_GETARG_TEXT_PP(0);
	AllmaParsedMail *m = allma_mail_parse(VARDATA_ANY(msg), VARSIZE_ANY_EXHDR(msg));
	Jsonb	   *out = mail_json(m, NULL, NULL, NULL, NULL);

	out = allma_jsonb_set_key(out, "deliveredTo", string_array(m->delivered_to));
	PG_RETURN_JSONB_P(out);
}
