/*-------------------------------------------------------------------------
 *
 * secret_use.c
 *	  Secret grants and allowed hosts, the check every step makes before it
 *	  puts a secret into a request, and the marks that carry secret
 *	  references through template rendering (see secret_use.h).
 *
 * SQL functions here: allma_set_secret_allowed_hosts, allma_check_secret_use
 * (the check, for administrators), and the statement-hiding front of
 * allma_set_secret.  Grants themselves are kept by acl.c's generic
 * allma_grant_secret / allma_revoke_secret, in allma.secrets.usage_grantees.
 *
 * Everything here reads allma.secrets as the bootstrap superuser; only the
 * grant list and the allowed hosts are read, never a value (values come
 * from secret.c's allma_secret_get once the use is allowed).
 *
 * IDENTIFICATION
 *	  src/secret_use.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "acl.h"
#include "jsonb_util.h"
#include "owner.h"
#include "secret.h"
#include "secret_use.h"
#include "template.h"

PG_FUNCTION_INFO_V1(allma_set_secret_allowed_hosts);
PG_FUNCTION_INFO_V1(allma_check_secret_use);
PG_FUNCTION_INFO_V1(allma_set_secret_hiding_statement);

/* secret.c's SQL function, called through the statement-hiding front */
extern PGDLLEXPORT Datum allma_set_secret(PG_FUNCTION_ARGS);

/* the same limit as secret.c's names */
#define SECRET_NAME_MAX		128
#define ALLOWED_HOST_MAX	253

#define MARK_BYTE			'\x01'
#define MARK_PREFIX			"\x01secret:"
#define NONCE_HEX_LEN		32

/* the random part of every mark this process makes */
static char mark_nonce[NONCE_HEX_LEN + 1];

static const char *
nonce(void)
{
	if (mark_nonce[0] == '\0')
	{
		uint8		bytes[NONCE_HEX_LEN / 2];

		if (!pg_strong_random(bytes, sizeof(bytes)))
			elog(ERROR, "allma: could not generate a random nonce for secret references");
		for (int i = 0; i < (int) sizeof(bytes); i++)
			snprintf(mark_nonce + 2 * i, 3, "%02x", bytes[i]);
	}
	return mark_nonce;
}

static bool
secret_name_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '_' || c == '-';
}

/* does role hold one of the grants in grantees (superusers hold all)? */
static bool
holds_grant(Oid role, Datum grantees, bool isnull)
{
	return superuser_arg(role) || allma_acl_role_in(role, grantees, isnull);
}

/*
 * host_allowed: is host one of allowed (a text[]): equal to an entry, or,
 * for an entry "*.domain", ending in ".domain" (one or more labels more).
 */
static bool
host_allowed(const char *host, Datum allowed)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	size_t		hlen = strlen(host);

	deconstruct_array(DatumGetArrayTypeP(allowed), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *entry;

		if (nulls[i])
			continue;
		entry = TextDatumGetCString(elems[i]);
		if (strncmp(entry, "*.", 2) == 0)
		{
			size_t		slen = strlen(entry + 1);	/* ".domain" */

			if (hlen > slen && pg_strcasecmp(host + hlen - slen, entry + 1) == 0)
				return true;
		}
		else if (pg_strcasecmp(host, entry) == 0)
			return true;
	}
	return false;
}

static void
refuse_role(const char *secret_name, Oid role, const char *what)
{
	char	   *name = allma_acl_role_name(role);

	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
			 errmsg("secret \"%s\" may not be used by a %s role \"%s\"", secret_name, what, name),
			 errdetail("A step may use a secret only when both the role that started the execution "
					   "and the role that created the flow version hold a grant on it."),
			 errhint("A member of allma_admin can grant it: SELECT allma_grant_secret('%s', '%s');",
					 secret_name, name)));
}

void
allma_secret_use_check(const char *secret_name, Oid starter, Oid flow_creator, const char *host)
{
	AllmaAsOwner st;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(secret_name)};
	bool		found;
	bool		grantees_null = true;
	bool		hosts_null = true;
	Datum		grantees = (Datum) 0;
	Datum		hosts = (Datum) 0;

	/* 1.0's schema, until ALTER EXTENSION UPDATE: no grants to check */
	if (!allma_acl_enforced())
		return;
	allma_owner_begin(&st);
	allma_owner_exec("SELECT usage_grantees, allowed_hosts FROM allma.secrets WHERE name = $1",
					 1, types, values, NULL, SPI_OK_SELECT);
	found = SPI_processed == 1;
	if (found)
	{
		grantees = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &grantees_null);
		hosts = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &hosts_null);
	}

	/* a missing secret is not granted to anybody (but superusers) */
	if (!holds_grant(starter, grantees, grantees_null))
		refuse_role(secret_name, starter, "step of an execution started by");
	if (!holds_grant(flow_creator, grantees, grantees_null))
		refuse_role(secret_name, flow_creator, "flow version created by");
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_UNKNOWN_SECRET),
				 errmsg("secret \"%s\" does not exist", secret_name),
				 errhint("Store it with allma_set_secret(name, value).")));
	if (!hosts_null && (host == NULL || !host_allowed(host, hosts)))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
				 errmsg("secret \"%s\" may not be sent to host \"%s\"", secret_name,
						host ? host : "(unknown)"),
				 errdetail("The secret may be sent only to its allowed hosts."),
				 errhint("See allma.secret_info.allowed_hosts; allma_set_secret_allowed_hosts changes them.")));
	allma_owner_end(&st);
}

char *
allma_secret_url_host(const char *url)
{
	CURLU	   *u;
	char	   *host = NULL;
	char	   *result = NULL;

	if (url == NULL)
		return NULL;
	u = curl_url();
	if (u == NULL)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host[0] != '\0')
	{
		size_t		len;

		result = pstrdup(host[0] == '[' ? host + 1 : host);
		len = strlen(result);
		if (len > 0 && (result[len - 1] == ']' || result[len - 1] == '.'))
			result[--len] = '\0';
		for (char *p = result; *p; p++)
			*p = pg_ascii_tolower((unsigned char) *p);
	}
	if (host != NULL)
		curl_free(host);
	curl_url_cleanup(u);
	return result;
}

char *
allma_secret_get_for(const char *secret_name, const AllmaSecretUse *use)
{
	Oid			creator = allma_flow_version_creator(use->flow_id, use->flow_version);

	allma_secret_use_check(secret_name, use->starter, creator, allma_secret_url_host(use->url));
	return allma_secret_get(secret_name);
}

/* ----------------------------------------------------------------
 * Marks
 * ----------------------------------------------------------------
 */

char *
allma_secret_mark_refs(const char *s)
{
	StringInfoData buf;
	const char *p = s;
	const char *ref;

	initStringInfo(&buf);
	while ((ref = strstr(p, ALLMA_SECRET_REF_PREFIX)) != NULL)
	{
		const char *name = ref + strlen(ALLMA_SECRET_REF_PREFIX);
		const char *end = strstr(name, ALLMA_SECRET_REF_SUFFIX);
		const char *c;

		if (end == NULL)
			break;
		for (c = name; c < end && secret_name_char(*c); c++)
			;
		if (c != end || end == name || end - name > SECRET_NAME_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
					 errmsg("invalid secret reference \"%s\"",
							pnstrdup(ref, end + strlen(ALLMA_SECRET_REF_SUFFIX) - ref)),
					 errdetail("A secret name has 1 to %d ASCII letters, digits, \"_\" and \"-\".",
							   SECRET_NAME_MAX)));
		appendBinaryStringInfo(&buf, p, ref - p);
		appendStringInfo(&buf, MARK_PREFIX "%s:", nonce());
		appendBinaryStringInfo(&buf, name, end - name);
		appendStringInfoChar(&buf, MARK_BYTE);
		p = end + strlen(ALLMA_SECRET_REF_SUFFIX);
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

Jsonb *
allma_secret_render_headers(Jsonb *headers, Jsonb *tctx)
{
	Jsonb	   *marked = allma_jsonb_empty_object();
	ListCell   *lc;

	foreach(lc, allma_jsonb_object_keys(headers))
	{
		char	   *k = lfirst(lc);
		char	   *v = allma_jsonb_get_cstring(headers, k);

		marked = allma_jsonb_set_key(marked, k, v ? allma_jsonb_string(allma_secret_mark_refs(v)) :
									 allma_jsonb_get(headers, k));
	}
	return allma_template_render_value(marked, tctx);
}

static void
refuse_mark_bytes(const char *field)
{
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
			 errmsg("%s contains the bytes of a secret reference", field),
			 errdetail("Values rendered from data must not contain the control byte 0x01 "
					   "that allma uses to mark secret references; such a value is refused "
					   "rather than sent.")));
}

/* does s[0..len) contain the nonce? */
static bool
contains_nonce(const char *s, size_t len)
{
	const char *n = nonce();

	for (size_t i = 0; i + NONCE_HEX_LEN <= len; i++)
	{
		if (s[i] == n[0] && memcmp(s + i, n, NONCE_HEX_LEN) == 0)
			return true;
	}
	return false;
}

void
allma_secret_mark_forbidden(const char *rendered, const char *field)
{
	if (rendered != NULL &&
		(strchr(rendered, MARK_BYTE) != NULL || contains_nonce(rendered, strlen(rendered))))
		refuse_mark_bytes(field);
}

/*
 * parse_mark: when s starts a complete mark of this process, sets *name
 * and *next (just after it) and returns true.
 */
static bool
parse_mark(const char *s, char **name, const char **next)
{
	size_t		plen = strlen(MARK_PREFIX);
	const char *p;
	const char *start;

	if (strncmp(s, MARK_PREFIX, plen) != 0 ||
		strncmp(s + plen, nonce(), NONCE_HEX_LEN) != 0 || s[plen + NONCE_HEX_LEN] != ':')
		return false;
	start = p = s + plen + NONCE_HEX_LEN + 1;
	while (secret_name_char(*p))
		p++;
	if (*p != MARK_BYTE || p == start || p - start > SECRET_NAME_MAX)
		return false;
	*name = pnstrdup(start, p - start);
	*next = p + 1;
	return true;
}

static char *
resolve_value(const char *s, const AllmaSecretUse *use, const char *header, bool *any)
{
	StringInfoData buf;
	const char *p = s;

	initStringInfo(&buf);
	for (;;)
	{
		const char *mark = strchr(p, MARK_BYTE);
		size_t		len = mark ? (size_t) (mark - p) : strlen(p);
		char	   *name;

		/* text around marks: the nonce there means a mark was cut apart */
		if (contains_nonce(p, len))
			refuse_mark_bytes(psprintf("header \"%s\"", header));
		appendBinaryStringInfo(&buf, p, len);
		if (mark == NULL)
			break;
		if (!parse_mark(mark, &name, &p))
			refuse_mark_bytes(psprintf("header \"%s\"", header));
		*any = true;
		appendStringInfoString(&buf, use ? allma_secret_get_for(name, use) : ALLMA_SECRET_REDACTED);
	}
	return buf.data;
}

Jsonb *
allma_secret_resolve_headers(Jsonb *headers, const AllmaSecretUse *use, bool *any)
{
	Jsonb	   *out = allma_jsonb_empty_object();
	ListCell   *lc;

	foreach(lc, allma_jsonb_object_keys(headers))
	{
		char	   *k = lfirst(lc);
		char	   *v = allma_jsonb_to_display_text(allma_jsonb_get(headers, k));

		out = allma_jsonb_set_key(out, k, allma_jsonb_string(resolve_value(v, use, k, any)));
	}
	return out;
}

/* ----------------------------------------------------------------
 * SQL functions
 * ----------------------------------------------------------------
 */

/*
 * normalize_allowed_host: entry in lower case, or NULL when it is not a
 * host name, an IP address or "*." followed by a domain.
 */
static char *
normalize_allowed_host(const char *entry)
{
	char	   *h = pstrdup(entry);
	char	   *name = h;
	size_t		len;

	for (char *p = h; *p; p++)
		*p = pg_ascii_tolower((unsigned char) *p);
	if (strncmp(name, "*.", 2) == 0)
		name += 2;
	len = strlen(name);
	if (len == 0 || len > ALLOWED_HOST_MAX || name[0] == '.' || name[0] == '-' ||
		name[len - 1] == '.' || strstr(name, "..") != NULL)
		return NULL;
	for (const char *p = name; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			  *p == '.' || *p == '-' || *p == ':'))
			return NULL;
	}
	if (strchr(name, ':') != NULL && name != h)
		return NULL;			/* no wildcard IPv6 addresses */
	return h;
}

/*
 * allma_set_secret_allowed_hosts(name text, allowed_hosts text[]): the hosts
 * the secret may be sent to (NULL: any host; an empty array: none).
 */
Datum
allma_set_secret_allowed_hosts(PG_FUNCTION_ARGS)
{
	text	   *name;
	AllmaAsOwner st;
	Oid			types[2] = {TEXTOID, TEXTARRAYOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("secret name must not be null")));
	name = PG_GETARG_TEXT_PP(0);
	values[0] = PointerGetDatum(name);
	if (PG_ARGISNULL(1))
	{
		values[1] = (Datum) 0;
		nulls[1] = 'n';
	}
	else
	{
		ArrayType  *in = PG_GETARG_ARRAYTYPE_P(1);
		Datum	   *elems;
		bool	   *elem_nulls;
		int			n;

		if (ARR_NDIM(in) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("allowed hosts must be a one-dimensional array")));
		deconstruct_array(in, TEXTOID, -1, false, TYPALIGN_INT, &elems, &elem_nulls, &n);
		for (int i = 0; i < n; i++)
		{
			char	   *entry = elem_nulls[i] ? NULL : TextDatumGetCString(elems[i]);
			char	   *host = entry ? normalize_allowed_host(entry) : NULL;

			if (host == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid allowed host \"%s\"", entry ? entry : "NULL"),
						 errdetail("An allowed host is a host name or IP address (matched exactly, "
								   "without port), or \"*.\" and a domain (any host below it).")));
			elems[i] = CStringGetTextDatum(host);
		}
		values[1] = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	}

	allma_owner_begin(&st);
	allma_owner_exec("UPDATE allma.secrets SET allowed_hosts = $2, updated_at = now() WHERE name = $1",
					 2, types, values, nulls, SPI_OK_UPDATE);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_UNKNOWN_SECRET),
				 errmsg("secret \"%s\" does not exist", text_to_cstring(name)),
				 errhint("Store it with allma_set_secret(name, value) first.")));
	allma_owner_end(&st);
	PG_RETURN_VOID();
}

/*
 * allma_check_secret_use(name text, starter regrole, flow_creator regrole,
 * url text DEFAULT NULL): the check a step makes, from SQL; raises the
 * step's error when the use would be refused.
 */
Datum
allma_check_secret_use(PG_FUNCTION_ARGS)
{
	char	   *url = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("secret name, starter and flow creator must not be null")));
	allma_secret_use_check(text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_OID(1),
						   PG_GETARG_OID(2), url ? allma_secret_url_host(url) : NULL);
	PG_RETURN_VOID();
}

/*
 * allma_set_secret(name text, value text) runs secret.c's function with
 * every error it raises marked "hide the statement": with the default
 * log_min_error_statement the server log would otherwise get the failing
 * statement, value included, beside the error (an invalid name, say).
 */
Datum
allma_set_secret_hiding_statement(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		DirectFunctionCall2(allma_set_secret, PG_GETARG_DATUM(0), PG_GETARG_DATUM(1));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		edata->hide_stmt = true;
		ReThrowError(edata);
	}
	PG_END_TRY();
	PG_RETURN_VOID();
}
