/*-------------------------------------------------------------------------
 *
 * bundle.h
 *	  Allma's export bundles: allma_import (bundle_import.c), allma_export
 *	  (bundle_export.c), and what they share with the rest of allma
 *	  (bundle_defs.c): agents and reusable step definitions.
 *
 * An Allma export bundle is {formatVersion, flows, promptTemplates, agents,
 * stepDefinitions, mcpConnections}.  Agents (allma.agents) name flows and
 * carry flowVariables that apply to every execution of those flows;
 * reusable step definitions (allma.step_definitions) are merged under the
 * steps that name them with stepDefinitionId.  See docs/from-allma.md.
 *
 * IDENTIFICATION
 *	  src/bundle.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_BUNDLE_H
#define ALLMA_BUNDLE_H

#include "allma.h"

#include "nodes/pg_list.h"

/* bounds of allma_import's input (docs/from-allma.md, "Limits") */
#define ALLMA_BUNDLE_MAX_BYTES		(16 * 1024 * 1024)
#define ALLMA_BUNDLE_MAX_OBJECTS	1000	/* per kind: flows, prompts, ... */
#define ALLMA_BUNDLE_MAX_PARAMS		100
#define ALLMA_BUNDLE_MAX_PARAM_LEN	4096
#define ALLMA_BUNDLE_MAX_ID_LEN		256

/*
 * allma_agent_flow_variables: the flowVariables of the agents that list
 * flow_id, merged shallowly in agent id order (a later agent wins), as
 * Allma's InitializeFlow does before the flow's own variables.  Only agents
 * whose owner holds EDIT on the flow count (an agent cannot inject
 * variables into another role's flow).  An empty object when there are
 * none or the schema of 1.1 is not installed.  With refuse_inactive, a
 * flow whose agents (those counted) are all disabled is refused (55000),
 * as Allma's triggers refuse inactive flows.  allma_start_flow calls it;
 * needs a transaction.
 */
extern Jsonb *allma_agent_flow_variables(const char *flow_id, bool refuse_inactive);

/*
 * allma_step_definitions_resolve: the flow definition with each step that
 * names a stepDefinitionId deep-merged over that definition (the step's
 * own fields win; objects merge, other values replace), as Allma does when
 * it loads a flow.  A definition resolves when caller has the privileges
 * of its owner (or allma_admin's); "system-<name>" ids that are no stored
 * definition resolve to the built-in module system/<name>.  Steps whose
 * definition does not resolve are left as they are, their keys appended
 * to *unresolved (when not NULL).  allma_create_flow calls it before
 * validating (and warns about those): versions are immutable, so a
 * definition applies to the versions stored after it.
 */
extern Jsonb *allma_step_definitions_resolve(Jsonb *def, Oid caller, List **unresolved);

/* deep merge: over's members win; objects merge recursively */
extern Jsonb *allma_jsonb_deep_merge(Jsonb *under, Jsonb *over);

/* is the schema of bundle import/export (1.1) installed? */
extern bool allma_bundle_tables_exist(void);

#endif							/* ALLMA_BUNDLE_H */
