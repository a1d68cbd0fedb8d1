/*-------------------------------------------------------------------------
 *
 * prompt.c
 *	  Versioned prompt templates: allma_create_prompt, allma_publish_prompt,
 *	  allma_get_prompt (SQL) and allma_prompt_get (the engine's reader).
 *
 * Like flows (api.c), prompts are written by functions that run their SQL
 * as the bootstrap superuser, with search_path pinned by the function
 * definitions; callers need no privileges on allma.prompts or
 * allma.prompt_templates.  A prompt id belongs to the role that created
 * its first version: new versions and publishing need its privileges (or
 * allma_admin's), reading needs USAGE (acl.c).  A template is checked
 * with the template parser before it is stored, so a step never meets a
 * prompt that cannot render.
 *
 * IDENTIFICATION
 *	  src/prompt.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "acl.h"
#include "owner.h"
#include "prompt.h"
#include "template.h"
#include "xactmemo.h"

PG_FUNCTION_INFO_V1(allma_create_prompt);
PG_FUNCTION_INFO_V1(allma_publish_prompt);
PG_FUNCTION_INFO_V1(allma_get_prompt);


/*
 * Prompts read by allma_prompt_get, kept for the rest of the transaction
 * (a worker pass renders the same prompt for many LLM steps), under
 * "<version asked for>/<prompt id>"; forgotten when this backend creates
 * or publishes a prompt.
 */
typedef struct PromptMemo
{
	int32		version;		/* the version used */
	char		content[FLEXIBLE_ARRAY_MEMBER];
} PromptMemo;

static AllmaXactMemo prompt_memo = ALLMA_XACTMEMO_INIT("allma prompt memo");

static char *
memo_key(const char *prompt_id, int32 asked)
{
	return psprintf("%d/%s", asked, prompt_id);
}

static void
unknown_prompt(const char *prompt_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_UNKNOWN_PROMPT),
			 errmsg("prompt \"%s\" does not exist", prompt_id),
			 errhint("Create it with allma_create_prompt(prompt_id, content).")));
}

/*
 * allma_create_prompt(prompt_id text, content text, publish boolean
 * DEFAULT true, description text DEFAULT NULL) returns integer: checks the
 * template and stores it as the next version of the prompt.  Throws
 * ERRCODE_ALLMA_INVALID_TEMPLATE naming the prompt when it does not parse.
 */
Datum
allma_create_prompt(PG_FUNCTION_ARGS)
{
	char	   *prompt_id;
	char	   *content;
	bool		publish;
	char	   *problem = NULL;
	AllmaAsOwner st;
	Oid			types[5] = {TEXTOID, INT4OID, TEXTOID, TEXTOID, OIDOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	Oid			caller = GetUserId();
	int32		version;
	int			rc;

	/* this backend reads prompts afresh from now on */
	allma_xactmemo_forget(&prompt_memo);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("prompt_id and content must not be null")));
	prompt_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	content = text_to_cstring(PG_GETARG_TEXT_PP(1));
	publish = PG_ARGISNULL(2) ? true : PG_GETARG_BOOL(2);

	if (prompt_id[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("prompt_id must not be empty")));
	if (!allma_template_check(content, &problem))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_TEMPLATE),
				 errmsg("invalid template in prompt \"%s\"", prompt_id),
				 errdetail("%s", problem ? problem : "The template does not parse.")));

	/* a new prompt id becomes the caller's; a new version needs its owner */
	version = allma_acl_next_version(ALLMA_OBJ_PROMPT, prompt_id, caller);
	allma_owner_begin(&st);
	values[0] = CStringGetTextDatum(prompt_id);
	values[1] = Int32GetDatum(version);
	values[2] = CStringGetTextDatum(content);
	if (PG_NARGS() > 3 && !PG_ARGISNULL(3))
		values[3] = PointerGetDatum(PG_GETARG_TEXT_PP(3));
	else
	{
		values[3] = (Datum) 0;
		nulls[3] = 'n';
	}
	values[4] = ObjectIdGetDatum(caller);
	rc = SPI_execute_with_args("INSERT INTO allma.prompt_templates "
							   "(prompt_id, version, content, description, created_by) "
							   "VALUES ($1, $2, $3, $4, $5::regrole)",
							   5, types, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "allma: could not store prompt version (%s)", SPI_result_code_string(rc));
	if (publish)
		allma_owner_exec("UPDATE allma.prompts SET published_version = $2, updated_at = now() "
						"WHERE prompt_id = $1", 2, types, values, NULL, SPI_OK_UPDATE);
	allma_owner_end(&st);

	PG_RETURN_INT32(version);
}

/* allma_publish_prompt(prompt_id text, version integer) */
Datum
allma_publish_prompt(PG_FUNCTION_ARGS)
{
	text	   *prompt_id = PG_GETARG_TEXT_PP(0);
	int32		version = PG_GETARG_INT32(1);
	AllmaAsOwner st;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {PointerGetDatum(prompt_id), Int32GetDatum(version)};

	/* this backend reads prompts afresh from now on */
	allma_xactmemo_forget(&prompt_memo);
	allma_acl_check(ALLMA_OBJ_PROMPT, text_to_cstring(prompt_id), GetUserId(), ALLMA_PRIV_EDIT, true);
	allma_owner_begin(&st);
	allma_owner_exec("UPDATE allma.prompts SET published_version = $2, updated_at = now() "
					"WHERE prompt_id = $1 AND EXISTS (SELECT 1 FROM allma.prompt_templates t "
					"WHERE t.prompt_id = $1 AND t.version = $2)",
					2, types, values, NULL, SPI_OK_UPDATE);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_UNKNOWN_VERSION),
				 errmsg("prompt \"%s\" has no version %d", text_to_cstring(prompt_id), version)));
	allma_owner_end(&st);
	PG_RETURN_VOID();
}

int32
allma_prompt_get(const char *prompt_id, int32 version, char **content)
{
	AllmaAsOwner st;
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	bool		isnull;
	Datum		d;
	int32		asked = Max(version, 0);
	const PromptMemo *known = allma_xactmemo_get(&prompt_memo, memo_key(prompt_id, asked));
	PromptMemo *memo;
	Size		len;

	if (known != NULL)
	{
		*content = pstrdup(known->content);
		return known->version;
	}
	values[0] = CStringGetTextDatum(prompt_id);
	allma_owner_begin(&st);
	if (version <= 0)
	{
		allma_owner_exec("SELECT published_version FROM allma.prompts WHERE prompt_id = $1",
						1, types, values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 0)
			unknown_prompt(prompt_id);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_NOT_PUBLISHED),
					 errmsg("prompt \"%s\" has no published version", prompt_id),
					 errhint("Publish one with allma_publish_prompt(prompt_id, version).")));
		version = DatumGetInt32(d);
	}
	values[1] = Int32GetDatum(version);
	allma_owner_exec("SELECT content FROM allma.prompt_templates "
					"WHERE prompt_id = $1 AND version = $2",
					2, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		allma_owner_exec("SELECT 1 FROM allma.prompts WHERE prompt_id = $1",
						1, types, values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 0)
			unknown_prompt(prompt_id);
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_UNKNOWN_VERSION),
				 errmsg("prompt \"%s\" has no version %d", prompt_id, version)));
	}
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*content = MemoryContextStrdup(caller, TextDatumGetCString(d));
	allma_owner_end(&st);
	len = strlen(*content);
	memo = palloc(offsetof(PromptMemo, content) + len + 1);
	memo->version = version;
	memcpy(memo->content, *content, len + 1);
	(void) allma_xactmemo_put(&prompt_memo, memo_key(prompt_id, asked), memo,
							  offsetof(PromptMemo, content) + len + 1);
	return version;
}

/*
 * allma_get_prompt(prompt_id text, version integer DEFAULT NULL) returns
 * text: allma_prompt_get from SQL (NULL version: the published one).
 */
Datum
allma_get_prompt(PG_FUNCTION_ARGS)
{
	char	   *content;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	allma_acl_check(ALLMA_OBJ_PROMPT, text_to_cstring(PG_GETARG_TEXT_PP(0)), GetUserId(),
					ALLMA_PRIV_USAGE, false);
	(void) allma_prompt_get(text_to_cstring(PG_GETARG_TEXT_PP(0)),
							PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1),
							&content);
	PG_RETURN_TEXT_P(cstring_to_text(content));
}
