/*-------------------------------------------------------------------------
 *
 * steps.h
 *	  The handlers and definition checks of the step types, one section
 *	  per file of src/steps/; the step-type table (step.c) points at them.
 *
 * IDENTIFICATION
 *	  src/steps/steps.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_STEPS_H
#define ALLMA_STEPS_H

#include "step.h"

struct AllmaChecker;

/* simple.c: NO_OP, END_FLOW and the start-point markers */
extern Jsonb *allma_step_pass_input(StepRun *run);
extern void allma_check_email_start_point(struct AllmaChecker *ck, JsonbContainer *step);
extern void allma_check_schedule_start_point(struct AllmaChecker *ck, JsonbContainer *step);

/* unsupported.c: step types Allma knows that this version does not run */
extern Jsonb *allma_step_unsupported(StepRun *run);
extern void allma_check_sqs_send(struct AllmaChecker *ck, JsonbContainer *step);
extern void allma_check_sns_publish(struct AllmaChecker *ck, JsonbContainer *step);

/*
 * module.c: module steps (CUSTOM_LOGIC, DATA_LOAD, DATA_SAVE,
 * DATA_TRANSFORMATION, CUSTOM_LAMBDA_INVOKE) and module bindings
 */
extern Jsonb *allma_module_step_start(StepRun *run);
extern Jsonb *allma_lambda_step_start(StepRun *run);
extern Jsonb *allma_module_step_complete(StepRun *run);
extern void allma_check_custom_lambda(struct AllmaChecker *ck, JsonbContainer *step);

/*
 * allma_binding_lookup finds the binding of a module identifier or Lambda
 * ARN (exact match first, then the longest LIKE pattern): the handler
 * function, or InvalidOid with *url (and *headers) set for an HTTP
 * binding (allma_bind_module_http).  InvalidOid and *url NULL when none.
 * *pattern: the binding's pattern (whose USAGE grants count), NULL when none.
 */
extern Oid	allma_binding_lookup(const char *key, char **url, Jsonb **headers, char **pattern);

/* allma_binding_invoke calls handler(jsonb) and returns its jsonb result */
extern Jsonb *allma_binding_invoke(Oid handler, Jsonb *input);

/* transform.c, join.c: DATA_TRANSFORMATION's built-in modules */
extern const AllmaBuiltinModule allma_transform_modules[];

/* sql.c: DATA_LOAD and DATA_SAVE's built-in modules */
extern const AllmaBuiltinModule allma_sql_modules[];
extern const AllmaBuiltinModule allma_aws_modules[];

/* a binding of "key" (allma_bind_module*), run as invoke_binding would */
extern bool allma_module_is_bound(const char *key);
extern Jsonb *allma_module_invoke_binding(StepRun *run, const char *key, Jsonb *payload);

/* fork.c: PARALLEL_FORK_MANAGER */
extern Jsonb *allma_fork_start(StepRun *run);
extern Jsonb *allma_fork_join(StepRun *run);
extern Jsonb *allma_fork_branch_result(AllmaPathState *ps);
extern void allma_check_parallel(struct AllmaChecker *ck, JsonbContainer *step);

/* api.c: API_CALL, POLL_EXTERNAL_API */
extern Jsonb *allma_api_call_start(StepRun *run);
extern Jsonb *allma_api_call_complete(StepRun *run);
extern Jsonb *allma_poll_start(StepRun *run);
extern Jsonb *allma_poll_complete(StepRun *run);
extern void allma_check_api_call(struct AllmaChecker *ck, JsonbContainer *step);
extern void allma_check_poll(struct AllmaChecker *ck, JsonbContainer *step);

/*
 * allma_http_binding_send: a module or Lambda ARN bound to an HTTP endpoint
 * is called like an API_CALL that POSTs the module input as JSON;
 * allma_http_binding_output is the step's output from the response.
 */
extern void allma_http_binding_send(StepRun *run, const char *url, Jsonb *headers,
									Jsonb *payload);
extern Jsonb *allma_http_binding_output(StepRun *run);

/* mcp.c: MCP_CALL */
extern Jsonb *allma_mcp_call_start(StepRun *run);
extern Jsonb *allma_mcp_call_complete(StepRun *run);
extern void allma_check_mcp_call(struct AllmaChecker *ck, JsonbContainer *step);

/* file.c: FILE_DOWNLOAD */
extern Jsonb *allma_file_download_start(StepRun *run);
extern Jsonb *allma_file_download_complete(StepRun *run);
extern void allma_check_file_download(struct AllmaChecker *ck, JsonbContainer *step);

/* llm.c: LLM_INVOCATION */
extern Jsonb *allma_llm_step_start(StepRun *run);
extern Jsonb *allma_llm_step_complete(StepRun *run);
extern void allma_check_llm_invocation(struct AllmaChecker *ck, JsonbContainer *step);

/* email.c: EMAIL */
extern Jsonb *allma_email_step_start(StepRun *run);
extern Jsonb *allma_email_step_complete(StepRun *run);
extern void allma_check_email(struct AllmaChecker *ck, JsonbContainer *step);

/* mime.c: the EMAIL step's message */

/* an attachment of an EMAIL step, read from allma.files */
typedef struct AllmaMailAttachment
{
	char	   *filename;		/* already encoded for a header */
	char	   *content_type;
	char	   *data;
	int			len;
} AllmaMailAttachment;

/* a message to build: the rendered fields of an EMAIL step */
typedef struct AllmaMailMessage
{
	const char *step_id;		/* names the step in errors */
	const char *from;
	const char *from_name;		/* or NULL */
	List	   *to;				/* of char *, from allma_mime_addresses */
	List	   *cc;
	List	   *reply_to;
	const char *subject;		/* or NULL */
	const char *body;
	const char *message_id;
	const char *boundary;		/* of the multipart message, if attachments */
	Jsonb	   *custom_headers; /* the step's customHeaders, or NULL */
	List	   *attachments;	/* of AllmaMailAttachment * */
} AllmaMailMessage;

/* the addresses of a field: a string ("," or ";" separated) or an array */
extern List *allma_mime_addresses(Jsonb *v);
/* the addresses of a header field's value (RFC 5322: names with commas are quoted) */
extern List *allma_mime_header_addresses(const char *s);
/* "addr" or "Name <addr>" with a well-formed addr */
extern bool allma_mime_address_valid(const char *a);
extern char *allma_mime_join_addresses(List *list);
/* the address part of "Name <addr>" or "addr" */
extern char *allma_mime_bare_address(const char *a);
/* header text: RFC 2047 encoded when not plain ASCII */
extern char *allma_mime_header_text(const char *s);
extern void allma_mime_build(AllmaMailMessage *m, StringInfo msg);

/* wait.c: WAIT_FOR_EXTERNAL_EVENT */
extern Jsonb *allma_wait_step_start(StepRun *run);
extern void allma_check_wait(struct AllmaChecker *ck, JsonbContainer *step);

/* subflow.c: START_FLOW_EXECUTION, START_SUB_FLOW */
extern int	allma_max_subflow_depth;
extern void allma_subflow_define_gucs(void);
extern Jsonb *allma_subflow_start(StepRun *run);
extern Jsonb *allma_subflow_complete(StepRun *run);
extern void allma_check_start_flow_execution(struct AllmaChecker *ck, JsonbContainer *step);
extern void allma_check_start_sub_flow(struct AllmaChecker *ck, JsonbContainer *step);

#endif							/* ALLMA_STEPS_H */
