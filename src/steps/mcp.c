/*-------------------------------------------------------------------------
 *
 * mcp.c
 *	  The MCP_CALL step: a tool call to an MCP server.
 *
 * MCP_CALL posts a JSON-RPC 2.0 "tools/call" message (the tool's arguments
 * are the step input) to the server of a connection stored in
 * allma.mcp_connections, over MCP's streamable-HTTP transport.  It runs like
 * API_CALL: the request is built in one pass and stored in the path, sent
 * by the worker after commit, and the step completes from the response in a
 * later pass.  The reply may be application/json or a text/event-stream
 * whose events carry JSON-RPC messages.
 *
 * The call is first made without a session.  A server that keeps sessions
 * answers it with 400 (or 404 when the session it gave ended); then the
 * step opens one -- "initialize", then the "notifications/initialized"
 * notification, each a request of its own -- stores the Mcp-Session-Id the
 * server returned with the connection, and calls the tool again.
 *
 * IDENTIFICATION
 *	  src/steps/mcp.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "defcheck.h"
#include "acl.h"
#include "jsonb_util.h"
#include "secret.h"
#include "steps.h"

/*
 * mcp_connection reads connection "id": its URL and the headers to send,
 * with a bearer secret turned into an Authorization header that refers to
 * the secret by name.  false when there is no such connection.
 */
static bool
mcp_connection(const char *id, char **url, Jsonb **headers, char **session)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	MemoryContext outer = CurrentMemoryContext;
	bool		found = false;

	values[0] = CStringGetTextDatum(id);
	SPI_connect();
	if (SPI_execute_with_args("SELECT url, headers, bearer_secret, session_id FROM allma.mcp_connections WHERE id = $1",
							  1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "allma: could not read allma.mcp_connections");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext spicxt = MemoryContextSwitchTo(outer);
		bool		isnull;
		Datum		d = SPI_getbinval(tup, desc, 2, &isnull);
		char	   *bearer = SPI_getvalue(tup, desc, 3);

		*url = SPI_getvalue(tup, desc, 1);
		*session = SPI_getvalue(tup, desc, 4);
		*headers = isnull ? allma_jsonb_empty_object() : DatumGetJsonbPCopy(d);
		if (bearer != NULL)
			*headers = allma_jsonb_set_key(*headers, "Authorization",
										   allma_jsonb_string(psprintf("Bearer " ALLMA_SECRET_REF_PREFIX "%s" ALLMA_SECRET_REF_SUFFIX, bearer)));
		MemoryContextSwitchTo(spicxt);
		found = true;
	}
	SPI_finish();
	return found;
}

/* the MCP protocol revision allma speaks (streamable HTTP) */
#define MCP_PROTOCOL_VERSION "2025-03-26"

/*
 * build_mcp_request leaves the step's next MCP request: the tools/call
 * (phase NULL), or, while it opens a session, "initialize" or the
 * "initialized" notification.  session: the Mcp-Session-Id to send (NULL:
 * the one stored with the connection, if any); after_init marks a call
 * made after opening a session, which does not open another.  An unknown
 * connection is a PermanentStepError naming the step.
 */
static void
build_mcp_request(StepRun *run, const char *phase, const char *session, bool after_init)
{
	AllmaStep  *step = run->step;
	char	   *conn_id = allma_jsonb_get_cstring(step->def, "mcpConnectionId");
	char	   *tool = allma_jsonb_get_cstring(step->def, "toolName");
	/*
	 * each phase of the handshake, and the call that follows it in the new
	 * session, is a new request with its own key (step.c); the key is also
	 * the JSON-RPC id of the call
	 */
	char	   *key = allma_step_request_key(run->ps, step,
											 phase != NULL ? phase :
											 after_init ? "after-initialize" : NULL);
	char	   *url;
	char	   *error;
	char	   *stored_session = NULL;
	Jsonb	   *conn_headers;
	Jsonb	   *headers = allma_jsonb_empty_object();
	Jsonb	   *params;
	Jsonb	   *msg = allma_jsonb_empty_object();
	Jsonb	   *req = allma_jsonb_empty_object();
	ListCell   *lc;

	if (conn_id == NULL || tool == NULL)
		allma_step_raise_config_error(psprintf("MCP_CALL step \"%s\" needs mcpConnectionId and toolName", step->id));
	if (!mcp_connection(conn_id, &url, &conn_headers, &stored_session))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
				 errmsg("MCP_CALL step \"%s\" uses MCP connection \"%s\", which does not exist",
						step->id, conn_id),
				 errhint("Create it with allma_create_mcp_connection.")));
	allma_acl_use_check(ALLMA_OBJ_MCP_CONNECTION, conn_id, run->ps->run_as, true, step->id);
	if (!allma_http_check_url(url, &error))
		allma_step_raise_config_error(psprintf("MCP connection \"%s\" has an invalid URL: %s", conn_id,
											   error ? error : "not an http or https URL"));

	/* the connection's headers; the transport's own two are ours */
	foreach(lc, allma_jsonb_object_keys(conn_headers))
	{
		char	   *name = lfirst(lc);
		char	   *value;

		if (pg_strcasecmp(name, "Content-Type") == 0 || pg_strcasecmp(name, "Accept") == 0)
			continue;
		value = allma_jsonb_to_display_text(allma_jsonb_get(conn_headers, name));
		headers = allma_jsonb_set_key(headers, name, allma_jsonb_string(allma_secret_mark_refs(value)));
	}
	headers = allma_jsonb_set_key(headers, "Content-Type", allma_jsonb_string("application/json"));
	headers = allma_jsonb_set_key(headers, "Accept",
								  allma_jsonb_string("application/json, text/event-stream"));

	/* a session the server gave (the initialize phase starts a new one) */
	if (session == NULL && phase == NULL)
		session = stored_session;
	if (session != NULL && (phase == NULL || strcmp(phase, "initialize") != 0))
	{
		headers = allma_jsonb_set_key(headers, "Mcp-Session-Id", allma_jsonb_string(session));
		headers = allma_jsonb_set_key(headers, "MCP-Protocol-Version",
									  allma_jsonb_string(MCP_PROTOCOL_VERSION));
	}

	msg = allma_jsonb_set_key(msg, "jsonrpc", allma_jsonb_string("2.0"));
	if (phase == NULL)
	{
		params = allma_jsonb_set_key(NULL, "name", allma_jsonb_string(tool));
		params = allma_jsonb_set_key(params, "arguments", run->input);
		msg = allma_jsonb_set_key(msg, "id", allma_jsonb_string(key));
		msg = allma_jsonb_set_key(msg, "method", allma_jsonb_string("tools/call"));
		msg = allma_jsonb_set_key(msg, "params", params);
	}
	else if (strcmp(phase, "initialize") == 0)
	{
		Jsonb	   *client = allma_jsonb_set_key(NULL, "name", allma_jsonb_string("allma"));

		client = allma_jsonb_set_key(client, "version", allma_jsonb_string(ALLMA_VERSION));
		params = allma_jsonb_set_key(NULL, "protocolVersion", allma_jsonb_string(MCP_PROTOCOL_VERSION));
		params = allma_jsonb_set_key(params, "capabilities", allma_jsonb_empty_object());
		params = allma_jsonb_set_key(params, "clientInfo", client);
		msg = allma_jsonb_set_key(msg, "id", allma_jsonb_string(key));
		msg = allma_jsonb_set_key(msg, "method", allma_jsonb_string("initialize"));
		msg = allma_jsonb_set_key(msg, "params", params);
	}
	else
		msg = allma_jsonb_set_key(msg, "method", allma_jsonb_string("notifications/initialized"));

	req = allma_jsonb_set_key(req, "method", allma_jsonb_string("POST"));
	req = allma_jsonb_set_key(req, "url", allma_jsonb_string(url));
	req = allma_jsonb_set_key(req, "body", allma_jsonb_string(allma_jsonb_to_cstring(msg)));
	req = allma_jsonb_set_key(req, "timeoutMs", allma_jsonb_int(allma_step_timeout_ms(run)));
	req = allma_jsonb_set_key(req, "idempotencyKey", allma_jsonb_string(key));
	req = allma_jsonb_set_key(req, "mcpConnectionId", allma_jsonb_string(conn_id));
	if (phase != NULL)
		req = allma_jsonb_set_key(req, "mcpPhase", allma_jsonb_string(phase));
	if (after_init)
		req = allma_jsonb_set_key(req, "mcpInitialized", allma_jsonb_bool(true));
	allma_step_set_io_request(run, req, headers);
}

Jsonb *
allma_mcp_call_start(StepRun *run)
{
	build_mcp_request(run, NULL, NULL, false);
	return NULL;
}

/* store_mcp_session remembers (or, with NULL, forgets) a connection's session */
static void
store_mcp_session(const char *conn_id, const char *session)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', session ? ' ' : 'n'};

	values[0] = CStringGetTextDatum(conn_id);
	values[1] = session ? CStringGetTextDatum(session) : (Datum) 0;
	SPI_connect();
	if (SPI_execute_with_args("UPDATE allma.mcp_connections SET session_id = $2 WHERE id = $1",
							  2, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "allma: could not update allma.mcp_connections");
	SPI_finish();
}

/*
 * mcp_session_step: MCP servers that keep sessions answer a call without
 * one with 400 (and one whose session ended with 404); then the step opens
 * a session first -- initialize, then the notifications/initialized
 * notification -- and calls the tool again, once per attempt.  Returns true
 * when it left a next request for the worker.
 */
static bool
mcp_session_step(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;
	Jsonb	   *prev = run->ps->prev_request;
	char	   *phase = allma_jsonb_get_cstring(prev, "mcpPhase");
	char	   *conn_id = allma_jsonb_get_cstring(prev, "mcpConnectionId");
	char	   *sent_session = allma_jsonb_get_cstring(allma_jsonb_get(prev, "headers"), "Mcp-Session-Id");

	if (phase != NULL && strcmp(phase, "initialize") == 0)
	{
		char	   *session;

		(void) allma_step_raise_for_transfer(c, 300, "MCP initialize");
		session = allma_jsonb_get_cstring(c->headers, "mcp-session-id");
		store_mcp_session(conn_id, session);
		if (session != NULL)
			build_mcp_request(run, "initialized", session, true);
		else
			build_mcp_request(run, NULL, NULL, true);	/* a stateless server */
		return true;
	}
	if (phase != NULL)
	{
		/* the initialized notification was accepted: now the call */
		(void) allma_step_raise_for_transfer(c, 300, "MCP initialized notification");
		build_mcp_request(run, NULL, sent_session, true);
		return true;
	}
	if (c->error == NULL && !allma_jsonb_has_key(prev, "mcpInitialized") &&
		((c->status == 400 && sent_session == NULL) || (c->status == 404 && sent_session != NULL)))
	{
		if (sent_session != NULL)
			store_mcp_session(conn_id, NULL);
		build_mcp_request(run, "initialize", NULL, false);
		return true;
	}
	return false;
}

/*
 * sse_data: the data of each event of a text/event-stream body (data lines
 * joined by newlines, per the SSE rules), as a list of C strings.
 */
static List *
sse_data(const char *body, size_t len)
{
	List	   *events = NIL;
	StringInfoData data;
	const char *p = body;
	const char *end = body + len;

	initStringInfo(&data);
	while (p <= end)
	{
		const char *eol = p;
		const char *colon;
		size_t		linelen;

		while (eol < end && *eol != '\n' && *eol != '\r')
			eol++;
		linelen = eol - p;
		if (linelen == 0)
		{
			/* a blank line (or the end) dispatches the event */
			if (data.len > 0)
			{
				data.data[--data.len] = '\0';	/* the last newline */
				events = lappend(events, pstrdup(data.data));
				resetStringInfo(&data);
			}
		}
		else if (*p != ':')
		{
			colon = memchr(p, ':', linelen);
			if (colon != NULL && colon - p == 4 && strncmp(p, "data", 4) == 0)
			{
				const char *v = colon + 1;

				if (v < eol && *v == ' ')
					v++;
				appendBinaryStringInfo(&data, v, eol - v);
				appendStringInfoChar(&data, '\n');
			}
			else if (colon == NULL && linelen == 4 && strncmp(p, "data", 4) == 0)
				appendStringInfoChar(&data, '\n');
		}
		if (eol >= end)
		{
			/* be lenient with a stream that ends without a blank line */
			if (data.len > 0)
			{
				data.data[--data.len] = '\0';
				events = lappend(events, pstrdup(data.data));
			}
			break;
		}
		if (*eol == '\r' && eol + 1 < end && eol[1] == '\n')
			eol++;
		p = eol + 1;
	}
	return events;
}

/*
 * mcp_pick_response: the JSON-RPC response to request "id" in doc (one
 * message or a batch), or NULL.  A response with a null id (the server
 * could not read the request) also answers it.
 */
static Jsonb *
mcp_pick_response(Jsonb *doc, const char *id)
{
	List	   *msgs = allma_jsonb_is_array(doc) ? allma_jsonb_array_elements(doc) : list_make1(doc);
	ListCell   *lc;

	foreach(lc, msgs)
	{
		Jsonb	   *msg = lfirst(lc);
		Jsonb	   *msg_id = allma_jsonb_get(msg, "id");
		char	   *s = msg_id ? allma_jsonb_get_cstring(msg, "id") : NULL;
		JsonbValue	v;

		if (!allma_jsonb_has_key(msg, "result") && !allma_jsonb_has_key(msg, "error"))
			continue;
		if (msg_id == NULL || (allma_jsonb_scalar(msg_id, &v) && v.type == jbvNull) ||
			(s != NULL && strcmp(s, id) == 0))
			return msg;
	}
	return NULL;
}

/* mcp_error_text: the text parts of a tool result's content, joined */
static char *
mcp_error_text(Jsonb *result)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, allma_jsonb_array_elements(allma_jsonb_get(result, "content")))
	{
		char	   *type = allma_jsonb_get_cstring(lfirst(lc), "type");
		char	   *text = allma_jsonb_get_cstring(lfirst(lc), "text");

		if (type != NULL && strcmp(type, "text") == 0 && text != NULL)
			appendStringInfo(&buf, "%s%s", buf.len > 0 ? "\n" : "", text);
	}
	if (buf.len == 0)
		return pstrdup("the tool reported an error");
	if (buf.len > 1000)
		buf.data[pg_mbcliplen(buf.data, buf.len, 1000)] = '\0';
	return buf.data;
}

/*
 * allma_mcp_call_complete: the step output {result} for the server's reply, or the
 * error it means: a JSON-RPC error or a result with isError is a
 * PermanentStepError, HTTP 5xx/429 and transfer failures transient.
 */
Jsonb *
allma_mcp_call_complete(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;
	char	   *tool = allma_jsonb_get_cstring(run->step->def, "toolName");
	char	   *id = allma_jsonb_get_cstring(run->ps->prev_request, "idempotencyKey");
	Jsonb	   *details;
	Jsonb	   *msg = NULL;
	Jsonb	   *error;
	Jsonb	   *result;
	bool		is_error = false;

	if (mcp_session_step(run))
		return NULL;
	details = allma_step_raise_for_transfer(c, 400, "MCP call");

	details = allma_jsonb_set_key(details, "mcpConnectionId",
								  allma_jsonb_get(run->ps->prev_request, "mcpConnectionId"));
	details = allma_jsonb_set_key(details, "toolName", allma_jsonb_string(tool ? tool : ""));
	if (c->body_len > 0 && memchr(c->body, '\0', c->body_len) == NULL &&
		pg_verifymbstr(c->body, c->body_len, true))
	{
		if (c->content_type != NULL &&
			pg_strncasecmp(c->content_type, "text/event-stream", 17) == 0)
		{
			ListCell   *lc;

			foreach(lc, sse_data(c->body, c->body_len))
			{
				Jsonb	   *doc = allma_step_parse_json(lfirst(lc));

				if (doc != NULL && (msg = mcp_pick_response(doc, id ? id : "")) != NULL)
					break;
			}
		}
		else
		{
			Jsonb	   *doc = allma_step_parse_json(c->body);

			if (doc != NULL)
				msg = mcp_pick_response(doc, id ? id : "");
		}
	}
	if (msg == NULL)
		allma_step_raise_error(ALLMA_ERR_PERMANENT,
							   psprintf("MCP server sent no JSON-RPC response to tools/call of \"%s\"", tool),
							   details);

	error = allma_jsonb_get(msg, "error");
	if (error != NULL)
	{
		char	   *message = allma_jsonb_get_cstring(error, "message");
		Jsonb	   *code = allma_jsonb_get(error, "code");

		details = allma_jsonb_set_key(details, "rpcError", error);
		allma_step_raise_error(ALLMA_ERR_PERMANENT,
							   allma_secret_redact(psprintf("MCP tool \"%s\" failed: JSON-RPC error %s: %s", tool,
															code ? allma_jsonb_to_display_text(code) : "?",
															message ? message : "no message")),
							   details);
	}
	result = allma_jsonb_get(msg, "result");
	if (result != NULL && allma_jsonb_get_bool(result, "isError", &is_error) && is_error)
		allma_step_raise_error(ALLMA_ERR_PERMANENT,
							   allma_secret_redact(psprintf("MCP tool \"%s\" returned an error: %s", tool,
															mcp_error_text(result))),
							   allma_jsonb_set_key(details, "isError", allma_jsonb_bool(true)));
	return allma_jsonb_set_key(NULL, "result", result ? result : allma_jsonb_null());
}

/* ----------------------------------------------------------------
 * The definition check
 * ----------------------------------------------------------------
 */

void
allma_check_mcp_call(AllmaChecker *ck, JsonbContainer *step)
{
	JsonbContainer *config;

	allma_def_get_nonempty_string(ck, step, NULL, "mcpConnectionId", !ck->inherits);
	allma_def_get_nonempty_string(ck, step, NULL, "toolName", !ck->inherits);
	config = allma_def_get_object(ck, step, NULL, "customConfig", false);
	if (config != NULL)
		allma_def_check_number_field(ck, config, "customConfig", "timeoutMs", true,
									 0, true, INFINITY, ERRCODE_ALLMA_INVALID_DEFINITION);
}
