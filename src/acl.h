/*-------------------------------------------------------------------------
 *
 * acl.h
 *	  Who may do what with allma's objects: the roles allma_user and
 *	  allma_admin, the owners of flows, prompts, module bindings and MCP
 *	  connections, and the privileges granted on them (START and EDIT on
 *	  flows, USAGE on prompts, module bindings, MCP connections and
 *	  secrets).
 *
 * An object's owner is the role that created it (a flow's or prompt's
 * first version).  The grants of an object are arrays of roles in its own
 * row (flows.start_grantees and edit_grantees, usage_grantees elsewhere),
 * so that they go with the object.  A role "holds" a privilege when it has
 * the privileges of the owner, of a grantee (role membership with INHERIT,
 * as PostgreSQL's own privileges) or of allma_admin; superusers hold every
 * privilege.  Secrets have no owner: only their grants count.
 *
 * Every function here reads allma's tables as the bootstrap superuser, so
 * it may be called from the SQL API and from the workers alike; it needs
 * a transaction.
 *
 * IDENTIFICATION
 *	  src/acl.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_ACL_H
#define ALLMA_ACL_H

#include "allma.h"

#define ALLMA_ADMIN_ROLE	"allma_admin"
#define ALLMA_USER_ROLE		"allma_user"

typedef enum AllmaObjectKind
{
	ALLMA_OBJ_FLOW,
	ALLMA_OBJ_PROMPT,
	ALLMA_OBJ_SECRET,
	ALLMA_OBJ_MODULE_BINDING,
	ALLMA_OBJ_MCP_CONNECTION
} AllmaObjectKind;

typedef enum AllmaPrivilege
{
	ALLMA_PRIV_MANAGE,			/* owner only: delete, grant, revoke */
	ALLMA_PRIV_EDIT,			/* new versions, publish, unpublish */
	ALLMA_PRIV_START,			/* start executions of a flow */
	ALLMA_PRIV_USAGE			/* read or use in steps */
} AllmaPrivilege;

/*
 * allma_acl_enforced: is the schema of 1.1 installed?  Between installing
 * this library and ALTER EXTENSION allma UPDATE the database still has 1.0's
 * tables (no owners, no grants): then every check here passes, as in 1.0,
 * so that a 1.0 installation keeps working until it is updated.
 */
extern bool allma_acl_enforced(void);

/* allma_acl_is_admin: is role a superuser or does it have allma_admin's privileges? */
extern bool allma_acl_is_admin(Oid role);

/*
 * allma_acl_role_in: does role have the privileges of one of grantees (a
 * regrole[] datum; isnull: none)?
 */
extern bool allma_acl_role_in(Oid role, Datum grantees, bool isnull);

/* allma_acl_role_name: the name of a role, or "with OID n" when it is gone */
extern char *allma_acl_role_name(Oid role);

/*
 * allma_acl_check throws unless role holds privilege on object id of kind:
 * the kind's "does not exist" error when there is no such object, else
 * insufficient_privilege (42501).  lock: the object's row is locked FOR
 * UPDATE (until the transaction ends).  Secrets have no owner: MANAGE on
 * a secret only checks that it exists (their functions are granted to
 * allma_admin).
 */
extern void allma_acl_check(AllmaObjectKind kind, const char *id, Oid role,
							AllmaPrivilege privilege, bool lock);

/* allma_acl_unknown throws the "does not exist" error of an object */
extern void allma_acl_unknown(AllmaObjectKind kind, const char *id) pg_attribute_noreturn();

/*
 * allma_acl_next_version: the next version number of a flow or prompt id.
 * A new id is claimed for caller (its owner from now on) and gets 1; an
 * existing one needs EDIT (allma_acl_check, row locked), so that two roles
 * creating the same new id at once cannot both get it.
 */
extern int32 allma_acl_next_version(AllmaObjectKind kind, const char *id, Oid caller);

/*
 * Checks made by steps, when they build their work (step code):
 * allma_acl_use_check throws a PermanentStepError (SQLSTATE LM200) naming
 * the step and the object unless role holds USAGE on it (nothing happens
 * when the object does not exist: the step's own lookup reports that).
 * role_is_starter says which role it is in the message: the execution's
 * starter (module bindings, MCP connections) or the flow version's creator
 * (prompts).
 */
extern void allma_acl_use_check(AllmaObjectKind kind, const char *id, Oid role,
								bool role_is_starter, const char *step_id);

/* the role that created a flow version (InvalidOid when there is none) */
extern Oid	allma_flow_version_creator(const char *flow_id, int32 version);

/*
 * allma_user_code_guard throws a PermanentStepError naming the step and
 * allma.allow_superuser_sql_steps when starter is a superuser and that
 * setting is off: SQL steps and SQL-bound functions run as the starter.
 */
extern void allma_user_code_guard(Oid starter, const char *step_id);

#endif							/* ALLMA_ACL_H */
