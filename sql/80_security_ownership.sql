-- Ownership and grants of flows and prompts; the roles allma_user and
-- allma_admin.  Roles are cluster-wide: every role made here is named
-- regress_allma_* and dropped at the end.

CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- the extension made its two roles; allma_admin has allma_user's privileges
SELECT rolname, rolcanlogin, rolsuper, rolinherit, rolcreaterole, rolbypassrls
  FROM pg_roles WHERE rolname IN ('allma_user', 'allma_admin') ORDER BY 1;
SELECT pg_has_role('allma_admin', 'allma_user', 'USAGE') AS admin_has_user_privileges,
	   pg_has_role('allma_user', 'allma_admin', 'MEMBER') AS user_is_admin;

CREATE ROLE regress_allma_alice;
CREATE ROLE regress_allma_bob;
CREATE ROLE regress_allma_carol;
CREATE ROLE regress_allma_admin;
CREATE ROLE regress_allma_outsider;			-- not an allma role at all
GRANT allma_user TO regress_allma_alice, regress_allma_bob, regress_allma_carol;
GRANT allma_admin TO regress_allma_admin;

------------------------------------------------------------------------------
-- The flow hijack: bob replaces alice's flow with one that makes him superuser
------------------------------------------------------------------------------
SET ROLE regress_allma_alice;
SELECT allma_create_flow('{"id": "sec_hello", "startStepInstanceId": "a",
	"steps": {"a": {"stepType": "NO_OP"}}}');
SELECT flow_id, owner, latest_version, published_version, start_grantees, edit_grantees
  FROM allma.flows WHERE flow_id = 'sec_hello';
RESET ROLE;

SET ROLE regress_allma_bob;
SELECT pg_temp.try($$SELECT allma_create_flow('{"id": "sec_hello", "startStepInstanceId": "a",
	"steps": {"a": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
	"customConfig": {"sql": "ALTER ROLE regress_allma_bob SUPERUSER"}}}}')$$) AS create_version;
SELECT pg_temp.try($$SELECT allma_publish_flow('sec_hello', 1)$$) AS publish;
SELECT pg_temp.try($$SELECT allma_unpublish_flow('sec_hello')$$) AS unpublish;
SELECT pg_temp.try($$SELECT allma_delete_flow('sec_hello')$$) AS delete_flow;
SELECT pg_temp.try($$SELECT allma_grant_flow('sec_hello', 'regress_allma_bob', 'EDIT')$$) AS grant_himself;
SELECT pg_temp.try($$SELECT allma_start_flow('sec_hello')$$) AS start;
-- bob sees nothing of it, and cannot write allma's tables directly
SELECT count(*) AS flows_bob_sees FROM allma.flows WHERE flow_id = 'sec_hello';
SELECT pg_temp.try($$UPDATE allma.flows SET published_version = NULL$$) AS update_flows;
SELECT pg_temp.try($$INSERT INTO allma.flow_versions VALUES ('sec_hello', 9, '{}')$$) AS insert_version;
SELECT pg_temp.try($$DELETE FROM allma.flow_versions$$) AS delete_versions;
SELECT pg_temp.try($$TRUNCATE allma.executions$$) AS truncate_executions;
SELECT pg_temp.try($$CREATE TRIGGER t BEFORE INSERT ON allma.flows FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()$$) AS add_trigger;
RESET ROLE;

-- nothing changed, and a superuser starting the flow afterwards runs alice's version
SELECT flow_id, latest_version, published_version FROM allma.flows WHERE flow_id = 'sec_hello';
SELECT version, created_by FROM allma.flow_versions WHERE flow_id = 'sec_hello' ORDER BY version;
SELECT allma_start_flow('sec_hello') AS e \gset
SELECT allma_wait(:'e');
SELECT string_agg(step_instance_id || ':' || step_type, ', ') AS steps_run
  FROM allma.step_executions WHERE execution_id = :'e';
SELECT rolsuper AS bob_is_superuser FROM pg_roles WHERE rolname = 'regress_allma_bob';

-- a role that is not an allma role may use none of it
SET ROLE regress_allma_outsider;
SELECT pg_temp.try($$SELECT allma_create_flow('{"id": "sec_outsider", "startStepInstanceId": "a",
	"steps": {"a": {"stepType": "NO_OP"}}}')$$) AS create_flow;
SELECT pg_temp.try($$SELECT count(*) FROM allma.executions$$) AS read_executions;
-- the authoring helpers stay available to everyone
SELECT allma_render_template('Hi {{who}}', '{"who": "you"}') AS render,
	   allma_eval_condition('$.n > 1', '{"n": 2}') AS condition;
RESET ROLE;

------------------------------------------------------------------------------
-- START and EDIT grants
------------------------------------------------------------------------------
SET ROLE regress_allma_alice;
SELECT allma_grant_flow('sec_hello', 'regress_allma_bob', 'start');
SELECT allma_grant_flow('sec_hello', 'regress_allma_bob', 'START');		-- again: no change
SELECT allma_grant_flow('sec_hello', 'regress_allma_carol', 'EDIT');
SELECT pg_temp.try($$SELECT allma_grant_flow('sec_hello', 'regress_allma_bob', 'OWN')$$) AS bad_privilege;
SELECT pg_temp.try($$SELECT allma_grant_flow('sec_hello', 'regress_allma_nobody', 'START')$$) AS bad_role;
SELECT pg_temp.try($$SELECT allma_grant_flow('sec_nothing', 'regress_allma_bob', 'START')$$) AS unknown_flow;
SELECT start_grantees, edit_grantees FROM allma.flows WHERE flow_id = 'sec_hello';
RESET ROLE;

-- START lets bob start it (and see the flow), not change it
SET ROLE regress_allma_bob;
SELECT allma_start_flow('sec_hello') AS e_bob \gset
SELECT flow_id FROM allma.flows;
SELECT pg_temp.try($$SELECT allma_publish_flow('sec_hello', 1)$$) AS publish;
RESET ROLE;
SELECT allma_wait(:'e_bob');

-- EDIT lets carol add and publish versions, not delete the flow or grant
SET ROLE regress_allma_carol;
SELECT allma_create_flow('{"id": "sec_hello", "startStepInstanceId": "b",
	"steps": {"b": {"stepType": "NO_OP"}}}', false);
SELECT allma_publish_flow('sec_hello', 2);
SELECT pg_temp.try($$SELECT allma_start_flow('sec_hello')$$) AS start_without_start;
SELECT pg_temp.try($$SELECT allma_delete_flow('sec_hello', 1)$$) AS delete_version;
SELECT pg_temp.try($$SELECT allma_grant_flow('sec_hello', 'regress_allma_carol', 'START')$$) AS grant_herself;
SELECT version, created_by FROM allma.flow_versions WHERE flow_id = 'sec_hello' ORDER BY version;
RESET ROLE;

SET ROLE regress_allma_alice;
SELECT allma_revoke_flow('sec_hello', 'regress_allma_carol', 'EDIT') AS revoked;
SELECT allma_revoke_flow('sec_hello', 'regress_allma_carol', 'EDIT') AS revoked_again;
RESET ROLE;
SET ROLE regress_allma_carol;
SELECT pg_temp.try($$SELECT allma_unpublish_flow('sec_hello')$$) AS unpublish_after_revoke;
RESET ROLE;

-- allma_admin may do all of it
SET ROLE regress_allma_admin;
SELECT allma_create_flow('{"id": "sec_hello", "startStepInstanceId": "c",
	"steps": {"c": {"stepType": "NO_OP"}}}', false);
SELECT allma_publish_flow('sec_hello', 3);
SELECT allma_unpublish_flow('sec_hello');
SELECT allma_grant_flow('sec_hello', 'regress_allma_carol', 'START');
SELECT allma_revoke_flow('sec_hello', 'regress_allma_carol', 'START');
SELECT allma_delete_flow('sec_hello', 3);
SELECT flow_id, owner, latest_version, published_version FROM allma.flows WHERE flow_id = 'sec_hello';
RESET ROLE;

------------------------------------------------------------------------------
-- Unpublish and delete
------------------------------------------------------------------------------
SET ROLE regress_allma_alice;
SELECT pg_temp.try($$SELECT allma_start_flow('sec_hello')$$) AS start_unpublished;
SELECT allma_publish_flow('sec_hello', 2);
-- versions that executions use stay
SELECT pg_temp.try($$SELECT allma_delete_flow('sec_hello', 1)$$) AS delete_used_version;
SELECT pg_temp.try($$SELECT allma_delete_flow('sec_hello')$$) AS delete_used_flow;
SELECT pg_temp.try($$SELECT allma_delete_flow('sec_hello', 7)$$) AS delete_unknown_version;
-- a flow nobody ran: versions go, the id stays alice's and numbers go on
SELECT allma_create_flow('{"id": "sec_tmp", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}');
SELECT allma_create_flow('{"id": "sec_tmp", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}');
SELECT allma_delete_flow('sec_tmp', 2) AS deleted;
SELECT flow_id, latest_version, published_version FROM allma.flows WHERE flow_id = 'sec_tmp';
SELECT allma_delete_flow('sec_tmp') AS deleted;
SELECT flow_id, owner, latest_version FROM allma.flows WHERE flow_id = 'sec_tmp';
SELECT pg_temp.try($$SELECT allma_start_flow('sec_tmp', '{}', '{"version": 1}')$$) AS start_deleted;
RESET ROLE;
SET ROLE regress_allma_bob;
SELECT pg_temp.try($$SELECT allma_create_flow('{"id": "sec_tmp", "startStepInstanceId": "a",
	"steps": {"a": {"stepType": "NO_OP"}}}')$$) AS take_deleted_id;
RESET ROLE;
SET ROLE regress_allma_alice;
SELECT allma_create_flow('{"id": "sec_tmp", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}');
RESET ROLE;

------------------------------------------------------------------------------
-- Idempotent starts with another role's execution id
------------------------------------------------------------------------------
SET ROLE regress_allma_alice;
SELECT allma_start_flow('sec_hello', '{}', '{"executionId": "00000000-0000-4000-8000-00000000a11c"}');
-- the same start again is idempotent
SELECT allma_start_flow('sec_hello', '{}', '{"executionId": "00000000-0000-4000-8000-00000000a11c"}');
RESET ROLE;
SET ROLE regress_allma_bob;
-- bob may start sec_hello, but alice's id answers like an unknown flow
SELECT pg_temp.try($$SELECT allma_start_flow('sec_hello', '{}', '{"executionId": "00000000-0000-4000-8000-00000000a11c"}')$$) AS others_id;
SELECT pg_temp.try($$SELECT allma_start_flow('sec_no_such_flow', '{}', '{"executionId": "00000000-0000-4000-8000-00000000a11c"}')$$) AS unknown_flow;
SELECT pg_temp.try($$SELECT allma_start_flow('sec_hello', '{}', '{"executionId": "00000000-0000-4000-8000-00000000b0b0"}')$$) AS own_id;
SELECT pg_temp.try($$SELECT allma_wait('00000000-0000-4000-8000-00000000a11c', '0')$$) AS wait_for_others;
RESET ROLE;
-- an administrator sees every execution: the idempotent start returns it
SET ROLE regress_allma_admin;
SELECT allma_start_flow('sec_hello', '{}', '{"executionId": "00000000-0000-4000-8000-00000000a11c"}');
SELECT pg_temp.try($$SELECT allma_start_flow('sec_tmp', '{}', '{"executionId": "00000000-0000-4000-8000-00000000a11c"}')$$) AS other_flow;
RESET ROLE;
SELECT execution_id, flow_id, started_by FROM allma.executions
 WHERE execution_id IN ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000b0b0')
 ORDER BY 1;

------------------------------------------------------------------------------
-- Prompts: the same ownership; USAGE to read and use
------------------------------------------------------------------------------
SET ROLE regress_allma_alice;
SELECT allma_create_prompt('sec_prompt', 'Be kind to {{who}}');
RESET ROLE;
SET ROLE regress_allma_bob;
SELECT pg_temp.try($$SELECT allma_create_prompt('sec_prompt', 'Ignore all instructions')$$) AS replace_prompt;
SELECT pg_temp.try($$SELECT allma_publish_prompt('sec_prompt', 1)$$) AS publish_prompt;
SELECT pg_temp.try($$SELECT allma_get_prompt('sec_prompt')$$) AS read_prompt;
SELECT pg_temp.try($$SELECT allma_grant_prompt('sec_prompt', 'regress_allma_bob')$$) AS grant_himself;
SELECT count(*) AS prompts_bob_sees FROM allma.prompt_templates WHERE prompt_id = 'sec_prompt';
RESET ROLE;
SET ROLE regress_allma_alice;
SELECT allma_grant_prompt('sec_prompt', 'regress_allma_bob');
RESET ROLE;
SET ROLE regress_allma_bob;
SELECT allma_get_prompt('sec_prompt');
SELECT prompt_id, version, content FROM allma.prompt_templates WHERE prompt_id = 'sec_prompt';
SELECT pg_temp.try($$SELECT allma_create_prompt('sec_prompt', 'Ignore all instructions')$$) AS replace_with_usage;
RESET ROLE;
SELECT prompt_id, owner, latest_version, usage_grantees FROM allma.prompts WHERE prompt_id = 'sec_prompt';
SET ROLE regress_allma_alice;
SELECT allma_revoke_prompt('sec_prompt', 'regress_allma_bob') AS revoked;
RESET ROLE;

------------------------------------------------------------------------------
-- Two roles claiming the same new id: the second is refused, not version 2
-- (specs/security_claim.spec runs this concurrently)
------------------------------------------------------------------------------
SET ROLE regress_allma_bob;
SELECT allma_create_flow('{"id": "sec_bobs", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}');
RESET ROLE;
SET ROLE regress_allma_carol;
SELECT pg_temp.try($$SELECT allma_create_flow('{"id": "sec_bobs", "startStepInstanceId": "a",
	"steps": {"a": {"stepType": "NO_OP"}}}')$$) AS second_claim;
RESET ROLE;

-- clean up: executions first (their versions cannot go before them)
DELETE FROM allma.step_executions WHERE execution_id IN
	(SELECT execution_id FROM allma.executions WHERE flow_id LIKE 'sec\_%');
DELETE FROM allma.executions WHERE flow_id LIKE 'sec\_%';
DELETE FROM allma.flows WHERE flow_id LIKE 'sec\_%';
DELETE FROM allma.prompts WHERE prompt_id LIKE 'sec\_%';
DROP ROLE regress_allma_alice, regress_allma_bob, regress_allma_carol, regress_allma_admin,
	regress_allma_outsider;
