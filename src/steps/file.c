/*-------------------------------------------------------------------------
 *
 * file.c
 *	  The FILE_DOWNLOAD step: a URL's body stored in allma.files.
 *
 * FILE_DOWNLOAD fetches a URL and stores the body, bytes as they came, in
 * allma.files (keyed by execution); the output points there.  It runs like
 * API_CALL: the request is built in one pass and stored in the path, sent
 * by the worker after commit, and the step completes from the response in
 * a later pass.
 *
 * IDENTIFICATION
 *	  src/steps/file.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "defcheck.h"
#include "jsonb_util.h"
#include "path.h"
#include "steps.h"
#include "template.h"

/*
 * allma_file_download_start: the request of a FILE_DOWNLOAD step.  headersTemplate
 * maps header names to JSONPaths into the context (as in Allma).
 */
Jsonb *
allma_file_download_start(StepRun *run)
{
	AllmaStep  *step = run->step;
	Jsonb	   *tctx = allma_step_template_context(run);
	char	   *tmpl = allma_jsonb_get_cstring(step->def, "sourceUrlTemplate");
	char	   *method = allma_jsonb_get_cstring(step->def, "method");
	Jsonb	   *header_defs = allma_jsonb_get(step->def, "headersTemplate");
	Jsonb	   *headers = allma_jsonb_empty_object();
	Jsonb	   *req = allma_jsonb_empty_object();
	char	   *url;
	char	   *error;
	ListCell   *lc;

	if (tmpl == NULL)
		allma_step_raise_config_error(psprintf("FILE_DOWNLOAD step \"%s\" has no sourceUrlTemplate", step->id));
	url = allma_template_render(tmpl, tctx);
	if (!allma_http_check_url(url, &error))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("step \"%s\" has an invalid URL \"%s\": %s", step->id, url,
						error ? error : "not an http or https URL")));

	foreach(lc, allma_jsonb_object_keys(allma_jsonb_is_object(header_defs) ? header_defs : NULL))
	{
		char	   *name = lfirst(lc);
		char	   *path = allma_jsonb_get_cstring(header_defs, name);
		Jsonb	   *v = path ? allma_path_get(run->ps->context, path) : NULL;

		if (v != NULL)
			headers = allma_jsonb_set_key(headers, name,
										  allma_jsonb_string(allma_jsonb_to_display_text(v)));
	}

	req = allma_jsonb_set_key(req, "method", allma_jsonb_string(method ? method : "GET"));
	req = allma_jsonb_set_key(req, "url", allma_jsonb_string(url));
	req = allma_jsonb_set_key(req, "timeoutMs", allma_jsonb_int(allma_step_timeout_ms(run)));
	req = allma_jsonb_set_key(req, "maxResponseBytes", allma_jsonb_int(allma_file_download_max_bytes));
	req = allma_jsonb_set_key(req, "idempotencyKey",
							  allma_jsonb_string(allma_step_idempotency_key(run->ps, step)));
	allma_step_set_io_request(run, req, headers);
	return NULL;
}

/* store_file inserts a downloaded body into allma.files; returns its file_id */
static char *
store_file(StepRun *run, const char *url, AllmaHttpCompletion *c)
{
	Oid			types[6] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID, BYTEAOID, INT8OID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bytea	   *content = palloc(VARHDRSZ + c->body_len);
	MemoryContext outer = CurrentMemoryContext;
	char	   *file_id;

	SET_VARSIZE(content, VARHDRSZ + c->body_len);
	memcpy(VARDATA(content), c->body, c->body_len);
	values[0] = UUIDPGetDatum(&run->ps->execution_id);
	values[1] = CStringGetTextDatum(run->step->id);
	values[2] = CStringGetTextDatum(url);
	values[3] = c->content_type ? CStringGetTextDatum(c->content_type) : (Datum) 0;
	if (c->content_type == NULL)
		nulls[3] = 'n';
	values[4] = PointerGetDatum(content);
	values[5] = Int64GetDatum((int64) c->body_len);

	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO allma.files (execution_id, step_id, url, content_type, "
							  "content, content_length) VALUES ($1, $2, $3, $4, $5, $6) "
							  "RETURNING file_id::text",
							  6, types, values, nulls, false, 1) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "allma: could not store a downloaded file");
	{
		MemoryContext spicxt = MemoryContextSwitchTo(outer);

		file_id = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();
	pfree(content);
	return file_id;
}

/*
 * allma_file_download_complete stores the downloaded body and returns
 * {filePointer: {fileId}, contentType, contentLength}.  Any status but 2xx
 * fails the step (429 and 5xx transient), and so does a body over
 * allma.file_download_max_bytes.
 */
Jsonb *
allma_file_download_complete(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;
	char	   *url = allma_jsonb_get_cstring(run->ps->prev_request, "url");
	double		max_bytes = allma_file_download_max_bytes;
	Jsonb	   *details;
	char	   *file_id;
	Jsonb	   *out;

	(void) allma_jsonb_get_number(run->ps->prev_request, "maxResponseBytes", &max_bytes);
	details = allma_jsonb_set_key(NULL, "url", allma_jsonb_string(url ? url : ""));
	details = allma_jsonb_set_key(details, "maxBytes", allma_jsonb_int((int64) max_bytes));
	details = allma_jsonb_set_key(details, "tooLarge", allma_jsonb_bool(true));
	if (c->error != NULL && c->too_large)
		allma_step_raise_error(ALLMA_ERR_PERMANENT,
							   psprintf("file download of step \"%s\" failed: %s", run->step->id, c->error),
							   details);
	if (c->error == NULL && (double) c->body_len > max_bytes)
		allma_step_raise_error(ALLMA_ERR_PERMANENT,
							   psprintf("file download of step \"%s\" failed: the body of %zu bytes exceeds allma.file_download_max_bytes (%lld bytes)",
										run->step->id, c->body_len, (long long) max_bytes),
							   details);
	(void) allma_step_raise_for_transfer(c, 300, "file download");

	file_id = store_file(run, url ? url : (c->effective_url ? c->effective_url : ""), c);
	out = allma_jsonb_set_key(NULL, "filePointer",
							  allma_jsonb_set_key(NULL, "fileId", allma_jsonb_string(file_id)));
	out = allma_jsonb_set_key(out, "contentType",
							  c->content_type ? allma_jsonb_string(c->content_type) : allma_jsonb_null());
	return allma_jsonb_set_key(out, "contentLength", allma_jsonb_int((int64) c->body_len));
}

/* ----------------------------------------------------------------
 * The definition check
 * ----------------------------------------------------------------
 */

void
allma_check_file_download(AllmaChecker *ck, JsonbContainer *step)
{
	JsonbContainer *config;

	{
		char	   *url = allma_def_get_template_string(ck, step, NULL, "sourceUrlTemplate", !ck->inherits);

		if (url != NULL)
			allma_def_check_url_template(ck, "sourceUrlTemplate", url);
	}
	allma_def_check_enum_field(ck, step, NULL, "method", false, allma_def_http_methods);
	allma_def_check_jsonpath_record(ck, step, NULL, "headersTemplate");
	allma_def_get_template_string(ck, step, NULL, "destinationBucket", false);
	allma_def_get_template_string(ck, step, NULL, "destinationKeyTemplate", false);
	config = allma_def_get_object(ck, step, NULL, "customConfig", false);
	if (config != NULL)
	{
		allma_def_check_number_field(ck, config, "customConfig", "timeoutMs", true,
									 0, true, INFINITY, ERRCODE_ALLMA_INVALID_DEFINITION);
		allma_def_get_bool(ck, config, "customConfig", "verifySsl", NULL);
	}
}
