/*-------------------------------------------------------------------------
 *
 * prompt.h
 *	  Versioned prompt templates (tables allma.prompts and
 *	  allma.prompt_templates), managed like flows: every
 *	  allma_create_prompt stores a new immutable version, one version is
 *	  the published one.
 *
 * An LLM_INVOCATION step's promptTemplateId names a prompt; as in Allma,
 * the step uses whichever version is published when it runs, not a
 * version fixed in the flow.
 *
 * IDENTIFICATION
 *	  src/prompt.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_PROMPT_H
#define ALLMA_PROMPT_H

#include "allma.h"

/* a prompt id that does not exist (class LM3xx, API errors) */
#define ERRCODE_ALLMA_UNKNOWN_PROMPT		MAKE_SQLSTATE('L','M','3','0','6')

/*
 * allma_prompt_get sets *content (palloc'd in the caller's context) to the
 * template text of version "version" of prompt "prompt_id", or of its
 * published version when version is 0, and returns the version used.
 * Reads as the bootstrap superuser; needs a transaction.  Throws
 * ERRCODE_ALLMA_UNKNOWN_PROMPT (no such prompt), ERRCODE_ALLMA_NOT_PUBLISHED
 * (version 0 and none published) or ERRCODE_ALLMA_UNKNOWN_VERSION.
 */
extern int32 allma_prompt_get(const char *prompt_id, int32 version, char **content);

#endif							/* ALLMA_PROMPT_H */
