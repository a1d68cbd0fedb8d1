/*-------------------------------------------------------------------------
 *
 * secret.c
 *	  Named secrets: table allma.secrets, the SQL functions that manage it
 *	  (allma_set_secret, allma_delete_secret, allma_get_secret,
 *	  allma_redact_secrets), and the engine's allma_secret_get and
 *	  allma_secret_redact.  See secret.h for the intended use.
 *
 * allma.secrets has no grants: only superusers (and the roles a superuser
 * grants the management functions to) get at the values.  The functions
 * read and write the table as the bootstrap superuser, so a role that was
 * granted EXECUTE on allma_set_secret can store a secret it cannot read
 * back.  The table is deliberately not dumped by pg_dump (see
 * allma--1.0.sql).
 *
 * Redaction cache: the values to redact live in SecretCacheContext, loaded
 * at most once per transaction (keyed by the local transaction id) and
 * dropped when this backend changes a secret.  Its size is that of the
 * table's values, which only superusers control.
 *
 * IDENTIFICATION
 *	  src/secret.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "compat.h"
#include "jsonb_util.h"
#include "owner.h"
#include "secret.h"
#include "xactmemo.h"

PG_FUNCTION_INFO_V1(allma_set_secret);
PG_FUNCTION_INFO_V1(allma_delete_secret);
PG_FUNCTION_INFO_V1(allma_get_secret);
PG_FUNCTION_INFO_V1(allma_redact_secrets);
PG_FUNCTION_INFO_V1(allma_redact_secrets_jsonb);

#define SECRET_NAME_MAX 128

/* the redaction cache */
static MemoryContext SecretCacheContext = NULL;
static char **secret_values = NULL;		/* longest first */
static int *secret_lengths = NULL;
static int	secret_count = 0;
static bool secret_first_byte[256];
static bool secret_cache_loaded = false;
static LocalTransactionId secret_cache_lxid = InvalidLocalTransactionId;


/* checks a secret name; throws invalid_parameter_value */
static void
check_secret_name(const char *name)
{
	const char *p;

	if (name[0] == '\0' || strlen(name) > SECRET_NAME_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid secret name \"%s\"", name),
				 errdetail("A secret name has 1 to %d characters.", SECRET_NAME_MAX)));
	for (p = name; *p; p++)
	{
		if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-') ||
			IS_HIGHBIT_SET(*p))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid secret name \"%s\"", name),
					 errdetail("A secret name consists of ASCII letters, digits, \"_\" and \"-\".")));
	}
}

/*
 * Values read by allma_secret_get, kept for the rest of the transaction:
 * a worker pass reads the same API key for every LLM step it runs.
 */
static AllmaXactMemo secret_memo = ALLMA_XACTMEMO_INIT("allma secret memo");

static void
invalidate_cache(void)
{
	secret_cache_loaded = false;
	secret_cache_lxid = InvalidLocalTransactionId;
	allma_xactmemo_forget(&secret_memo);
}

/*
 * load_cache reads the values to redact (and their JSON-escaped forms)
 * into SecretCacheContext, longest first.  Needs a transaction.
 */
static void
load_cache(void)
{
	AllmaAsOwner st;
	MemoryContext old;
	Oid			relid;
	int			i,
				n = 0;
	List	   *values = NIL;
	ListCell   *lc;

	secret_cache_loaded = false;
	if (SecretCacheContext == NULL)
		SecretCacheContext = AllocSetContextCreate(TopMemoryContext,
												   "allma secret cache",
												   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(SecretCacheContext);
	secret_values = NULL;
	secret_lengths = NULL;
	secret_count = 0;
	memset(secret_first_byte, 0, sizeof(secret_first_byte));

	/* nothing to redact while the extension is not installed */
	relid = RangeVarGetRelid(makeRangeVar(ALLMA_SCHEMA, "secrets", -1), NoLock, true);
	if (OidIsValid(relid))
	{
		allma_owner_begin(&st);
		if (SPI_execute("SELECT value FROM allma.secrets WHERE octet_length(value) >= "
						CppAsString2(ALLMA_SECRET_MIN_REDACT_LEN),
						true, 0) != SPI_OK_SELECT)
			elog(ERROR, "allma: could not read allma.secrets");
		old = MemoryContextSwitchTo(SecretCacheContext);
		for (i = 0; i < (int) SPI_processed; i++)
		{
			char	   *v = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			StringInfoData esc;

			values = lappend(values, v);
			/* the form the value takes inside a JSON string */
			initStringInfo(&esc);
			escape_json(&esc, v);
			esc.data[esc.len - 1] = '\0';
			if (strcmp(esc.data + 1, v) != 0)
				values = lappend(values, esc.data + 1);
		}
		MemoryContextSwitchTo(old);
		allma_owner_end(&st);
	}

	old = MemoryContextSwitchTo(SecretCacheContext);
	secret_count = list_length(values);
	secret_values = palloc0(sizeof(char *) * (secret_count + 1));
	secret_lengths = palloc0(sizeof(int) * (secret_count + 1));
	foreach(lc, values)
	{
		char	   *v = lfirst(lc);
		int			len = strlen(v);

		/* insertion sort, longest first */
		for (i = n; i > 0 && secret_lengths[i - 1] < len; i--)
		{
			secret_values[i] = secret_values[i - 1];
			secret_lengths[i] = secret_lengths[i - 1];
		}
		secret_values[i] = v;
		secret_lengths[i] = len;
		secret_first_byte[(unsigned char) v[0]] = true;
		n++;
	}
	MemoryContextSwitchTo(old);
	secret_cache_loaded = true;
	secret_cache_lxid = ALLMA_MY_LXID;
}

static void
ensure_cache(void)
{
	if (IsTransactionState())
	{
		if (!secret_cache_loaded || secret_cache_lxid != ALLMA_MY_LXID)
			load_cache();
	}
	else if (!secret_cache_loaded)
		elog(ERROR, "allma: secrets cannot be loaded outside a transaction");
}

/* redacted copy of text, or NULL when it contains no secret */
static char *
redact_or_null(const char *text, int len)
{
	StringInfoData buf;
	int			i = 0,
				copied = 0;
	bool		changed = false;

	ensure_cache();
	if (secret_count == 0)
		return NULL;
	while (i < len)
	{
		int			s,
					match = -1;

		if (secret_first_byte[(unsigned char) text[i]])
		{
			for (s = 0; s < secret_count; s++)
			{
				if (secret_lengths[s] <= len - i &&
					memcmp(text + i, secret_values[s], secret_lengths[s]) == 0)
				{
					match = s;
					break;
				}
			}
		}
		if (match < 0)
		{
			i++;
			continue;
		}
		if (!changed)
		{
			initStringInfo(&buf);
			changed = true;
		}
		appendBinaryStringInfo(&buf, text + copied, i - copied);
		appendStringInfoString(&buf, ALLMA_SECRET_REDACTED);
		i += secret_lengths[match];
		copied = i;
	}
	if (!changed)
		return NULL;
	appendBinaryStringInfo(&buf, text + copied, len - copied);
	return buf.data;
}

char *
allma_secret_redact(const char *text)
{
	char	   *res;

	if (text == NULL)
		return NULL;
	res = redact_or_null(text, strlen(text));
	return res ? res : pstrdup(text);
}

Jsonb *
allma_secret_redact_jsonb(Jsonb *value)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbParseState *state = NULL;
	JsonbValue *res = NULL;
	bool		changed = false;

	if (value == NULL)
		return NULL;
	ensure_cache();
	if (secret_count == 0)
		return value;

	it = JsonbIteratorInit(&value->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if ((tok == WJB_KEY || tok == WJB_VALUE || tok == WJB_ELEM) &&
			v.type == jbvString)
		{
			char	   *r = redact_or_null(v.val.string.val, v.val.string.len);

			if (r != NULL)
			{
				v.val.string.val = r;
				v.val.string.len = strlen(r);
				changed = true;
			}
		}
		/* scalars, and the raw-scalar flag of WJB_BEGIN_ARRAY, go back in */
		res = pushJsonbValue(&state, tok, tok <= WJB_BEGIN_ARRAY ? &v : NULL);
	}
	if (!changed)
		return value;
	return JsonbValueToJsonb(res);
}

char *
allma_secret_get(const char *name)
{
	AllmaAsOwner st;
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *result = NULL;
	bool		isnull;
	const char *known = allma_xactmemo_get(&secret_memo, name);

	if (known != NULL)
		return pstrdup(known);
	values[0] = CStringGetTextDatum(name);
	allma_owner_begin(&st);
	if (SPI_execute_with_args("SELECT value FROM allma.secrets WHERE name = $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "allma: could not read allma.secrets");
	if (SPI_processed > 0)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			result = MemoryContextStrdup(caller, TextDatumGetCString(d));
	}
	allma_owner_end(&st);
	if (result == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_UNKNOWN_SECRET),
				 errmsg("secret \"%s\" does not exist", name),
				 errhint("Store it with allma_set_secret(name, value).")));
	(void) allma_xactmemo_put(&secret_memo, name, result, strlen(result) + 1);
	return result;
}

/*
 * allma_set_secret(name text, value text): creates or replaces a secret.
 * Warns when the value is too short to be redacted.
 */
Datum
allma_set_secret(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *value = PG_GETARG_TEXT_PP(1);
	AllmaAsOwner st;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	check_secret_name(name);
	if (VARSIZE_ANY_EXHDR(value) < ALLMA_SECRET_MIN_REDACT_LEN)
		ereport(WARNING,
				(errmsg("secret \"%s\" is shorter than %d bytes and will not be redacted",
						name, ALLMA_SECRET_MIN_REDACT_LEN)));
	values[0] = CStringGetTextDatum(name);
	values[1] = PointerGetDatum(value);
	allma_owner_begin(&st);
	if (SPI_execute_with_args("INSERT INTO allma.secrets AS s (name, value) VALUES ($1, $2) "
							  "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
							  "updated_at = now()",
							  2, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "allma: could not write allma.secrets");
	allma_owner_end(&st);
	invalidate_cache();
	PG_RETURN_VOID();
}

/* allma_delete_secret(name text) returns boolean: false when there was none */
Datum
allma_delete_secret(PG_FUNCTION_ARGS)
{
	text	   *name = PG_GETARG_TEXT_PP(0);
	AllmaAsOwner st;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {PointerGetDatum(name)};
	bool		found;

	allma_owner_begin(&st);
	if (SPI_execute_with_args("DELETE FROM allma.secrets WHERE name = $1",
							  1, types, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "allma: could not write allma.secrets");
	found = SPI_processed > 0;
	allma_owner_end(&st);
	invalidate_cache();
	PG_RETURN_BOOL(found);
}

/* allma_get_secret(name text) returns text: allma_secret_get from SQL */
Datum
allma_get_secret(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(allma_secret_get(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}

/* allma_redact_secrets(text) returns text */
Datum
allma_redact_secrets(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(allma_secret_redact(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}

/* allma_redact_secrets(jsonb) returns jsonb */
Datum
allma_redact_secrets_jsonb(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(allma_secret_redact_jsonb(PG_GETARG_JSONB_P(0)));
}
