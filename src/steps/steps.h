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

/* simple.c: NO_OP, END_FLOW and the start-point markers */
extern Jsonb *allma_step_pass_input(StepRun *run);

/* unsupported.c: step types Allma knows that this version does not run */
extern Jsonb *allma_step_unsupported(StepRun *run);

/* module.c: module steps (CUSTOM_LOGIC, DATA_*, CUSTOM_LAMBDA_INVOKE) */
extern Jsonb *allma_transform_step_start(StepRun *run);
extern Jsonb *allma_data_step_start(StepRun *run);
extern Jsonb *allma_custom_logic_start(StepRun *run);
extern Jsonb *allma_lambda_step_start(StepRun *run);
extern Jsonb *allma_module_step_complete(StepRun *run);

/* fork.c: PARALLEL_FORK_MANAGER */
extern Jsonb *allma_fork_start(StepRun *run);
extern Jsonb *allma_fork_join(StepRun *run);
extern Jsonb *allma_fork_branch_result(AllmaPathState *ps);

/* api.c: API_CALL, POLL_EXTERNAL_API */
extern Jsonb *allma_api_call_start(StepRun *run);
extern Jsonb *allma_api_call_complete(StepRun *run);
extern Jsonb *allma_poll_start(StepRun *run);
extern Jsonb *allma_poll_complete(StepRun *run);

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

/* file.c: FILE_DOWNLOAD */
extern Jsonb *allma_file_download_start(StepRun *run);
extern Jsonb *allma_file_download_complete(StepRun *run);

/* llm.c: LLM_INVOCATION */
extern Jsonb *allma_llm_step_start(StepRun *run);
extern Jsonb *allma_llm_step_complete(StepRun *run);

/* email.c: EMAIL */
extern Jsonb *allma_email_step_start(StepRun *run);
extern Jsonb *allma_email_step_complete(StepRun *run);

#endif							/* ALLMA_STEPS_H */
