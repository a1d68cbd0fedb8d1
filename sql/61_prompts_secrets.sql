-- Versioned prompt templates and named secrets.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- errors as "SQLSTATE: message (detail)" (VERBOSITY verbose would print
-- C source line numbers)
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	det text;
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
	RETURN st || ': ' || msg || coalesce(nullif(' (' || det || ')', ' ()'), '');
END $$;

------------------------------------------------------------------------------
-- Prompts: versions and publishing
------------------------------------------------------------------------------

SELECT allma_create_prompt('greet', 'Hello {{name}}!');
SELECT allma_create_prompt('greet', 'Hi {{name}}, you are {{age}}.', false, 'second try');
SELECT allma_create_prompt('greet', '{{#each items}}- {{this}}{{/each}}', publish => false);
SELECT prompt_id, latest_version, published_version FROM allma.prompts;
SELECT prompt_id, version, content, description, created_by
  FROM allma.prompt_templates ORDER BY version;

-- the published version by default, any version on request
SELECT allma_get_prompt('greet') AS published, allma_get_prompt('greet', 2) AS v2;
SELECT allma_publish_prompt('greet', 2);
SELECT allma_get_prompt('greet') AS published;
-- the stored text renders
SELECT allma_render_template(allma_get_prompt('greet'), '{"name": "Ada", "age": 36}');

-- an invalid template names the prompt; nothing is stored
SELECT pg_temp.try($$SELECT allma_create_prompt('broken', '{{#if x}}never closed')$$);
SELECT pg_temp.try($$SELECT allma_create_prompt('greet', 'Hi {{name')$$);
SELECT count(*) FROM allma.prompts WHERE prompt_id = 'broken';
SELECT latest_version FROM allma.prompts WHERE prompt_id = 'greet';

-- errors
SELECT pg_temp.try($$SELECT allma_create_prompt('', 'x')$$);
SELECT pg_temp.try($$SELECT allma_create_prompt(NULL, 'x')$$);
SELECT pg_temp.try($$SELECT allma_create_prompt('p', NULL)$$);
SELECT pg_temp.try($$SELECT allma_publish_prompt('nope', 1)$$);
SELECT pg_temp.try($$SELECT allma_publish_prompt('greet', 9)$$);
SELECT pg_temp.try($$SELECT allma_get_prompt('nope')$$);
SELECT pg_temp.try($$SELECT allma_get_prompt('greet', 9)$$);
SELECT allma_create_prompt('draft', 'not yet', false);
SELECT pg_temp.try($$SELECT allma_get_prompt('draft')$$);
SELECT allma_get_prompt('draft', 1);

------------------------------------------------------------------------------
-- Secrets
------------------------------------------------------------------------------

SELECT allma_set_secret('OPENAI_KEY', 'sk-live-0123456789');
SELECT allma_get_secret('OPENAI_KEY');
SELECT allma_set_secret('OPENAI_KEY', 'sk-live-rotated-999');
SELECT allma_get_secret('OPENAI_KEY');
SELECT name, value, updated_at >= created_at AS ok FROM allma.secrets;
SELECT pg_temp.try($$SELECT allma_get_secret('MISSING')$$);
SELECT pg_temp.try($$SELECT allma_set_secret('bad name', 'x')$$);
SELECT pg_temp.try($$SELECT allma_set_secret('a.b', 'x')$$);
SELECT pg_temp.try($$SELECT allma_set_secret('', 'x')$$);
SELECT pg_temp.try($$SELECT allma_set_secret(repeat('n', 129), 'x')$$);
-- too short to redact: stored, with a warning
SELECT allma_set_secret('PIN', 'abc');
SELECT allma_delete_secret('PIN'), allma_delete_secret('PIN');

-- secrets are not dumped (pg_dump would print them); prompts are
SELECT c::regclass AS dumped FROM pg_extension, unnest(extconfig) c
 WHERE extname = 'allma' ORDER BY c::regclass::text;

------------------------------------------------------------------------------
-- Redaction
------------------------------------------------------------------------------

SELECT allma_set_secret('TOKEN', 'tok-1234');
SELECT allma_set_secret('TOKEN_LONG', 'tok-1234-extended');
SELECT allma_set_secret('QUOTED', 'pa"ss\word');
SELECT allma_set_secret('SHORT', 'xyz');

SELECT allma_redact_secrets(t)
  FROM (VALUES ('Authorization: Bearer sk-live-rotated-999'),
               ('tok-1234 and tok-1234-extended and tok-1234tok-1234'),
               ('raw pa"ss\word'),
               ('as JSON: {"k": "pa\"ss\\word"}'),
               ('short values stay: xyz'),
               ('nothing secret here'),
               ('')) t(t);

SELECT allma_redact_secrets('{"headers": {"authorization": "Bearer sk-live-rotated-999"},
                              "list": ["tok-1234", 1, null, {"deep": "x tok-1234-extended y"}],
                              "pa\"ss\\word": "key too",
                              "n": 42}'::jsonb);
SELECT allma_redact_secrets('"tok-1234"'::jsonb), allma_redact_secrets('{"clean": true}'::jsonb);

-- a secret set in this transaction is redacted at once; after a rollback it is gone
BEGIN;
SELECT allma_redact_secrets('new-secret-value');
SELECT allma_set_secret('NEW', 'new-secret-value');
SELECT allma_redact_secrets('new-secret-value');
ROLLBACK;
SELECT allma_redact_secrets('new-secret-value');
SELECT allma_delete_secret('TOKEN_LONG');
SELECT allma_redact_secrets('tok-1234-extended');

------------------------------------------------------------------------------
-- Privileges: an ordinary role
------------------------------------------------------------------------------

CREATE ROLE allma_llm_test_user;
-- (since 1.1 a member of allma_user creates prompts and sees its own only:
-- docs/security.md)
GRANT allma_user TO allma_llm_test_user;
SET ROLE allma_llm_test_user;
-- prompts: creatable by allma_user members; others' are not visible
SELECT count(*) > 0 FROM allma.prompt_templates;
SELECT allma_create_prompt('user_prompt', 'From {{who}}');
SELECT allma_get_prompt('user_prompt');
-- secrets: nothing
SELECT pg_temp.try($$SELECT * FROM allma.secrets$$);
SELECT pg_temp.try($$SELECT value FROM allma.secrets WHERE name = 'OPENAI_KEY'$$);
SELECT pg_temp.try($$SELECT allma_get_secret('OPENAI_KEY')$$);
SELECT pg_temp.try($$SELECT allma_set_secret('MINE', 'value-1234')$$);
SELECT pg_temp.try($$SELECT allma_delete_secret('OPENAI_KEY')$$);
SELECT pg_temp.try($$SELECT allma_redact_secrets('sk-live-rotated-999')$$);
SELECT pg_temp.try($$UPDATE allma.prompts SET published_version = NULL$$);
RESET ROLE;
SELECT prompt_id, version, created_by FROM allma.prompt_templates WHERE prompt_id = 'user_prompt';

-- a role granted EXECUTE on allma_set_secret can store a secret but not read it
GRANT EXECUTE ON FUNCTION allma_set_secret(text, text) TO allma_llm_test_user;
SET ROLE allma_llm_test_user;
SELECT allma_set_secret('DELEGATED', 'delegated-value');
SELECT pg_temp.try($$SELECT value FROM allma.secrets WHERE name = 'DELEGATED'$$);
RESET ROLE;
SELECT allma_get_secret('DELEGATED');

-- clean up the cluster-wide role and what it owns here
REVOKE EXECUTE ON FUNCTION allma_set_secret(text, text) FROM allma_llm_test_user;
DELETE FROM allma.prompts WHERE prompt_id = 'user_prompt';  -- cascades to its versions
SELECT count(*) FROM allma.prompt_templates WHERE prompt_id = 'user_prompt';
DROP ROLE allma_llm_test_user;
SELECT allma_delete_secret(name) FROM allma.secrets ORDER BY name;
