# The security model reaches a 1.0 installation through ALTER EXTENSION
# allma UPDATE: flows, prompts and executions made by two roles under 1.0
# get owners, the roles that used allma become members of allma_user, what
# everyone could use stays usable (START, USAGE to allma_user), the new
# rules hold, and executions started before the update go on to the end,
# still as their starters.  A second database reuses the cluster-wide roles.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

# (the library is 1.1's: until the update it keeps 1.0's rules)
my $node = allma_node('upgrade', undef, create => "CREATE EXTENSION allma VERSION '1.0'");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

is(q1("SELECT extversion FROM pg_extension WHERE extname = 'allma'"), '1.0', 'installed as 1.0');

q1(q{
CREATE ROLE alice;
CREATE ROLE bob;
CREATE ROLE carol;		-- never used allma
CREATE FUNCTION echo(input jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT input $$;
SELECT allma_bind_module('up/echo', 'echo(jsonb)');
SET ROLE alice;
SELECT allma_create_flow('{"id": "a_flow", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}');
SELECT allma_create_flow('{"id": "a_flow", "startStepInstanceId": "q", "steps": {
  "q": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
        "customConfig": {"sql": "SELECT current_user AS who"}}}}');
SELECT allma_create_prompt('a_prompt', 'Be brief');
SELECT allma_create_flow('{"id": "a_wait", "startStepInstanceId": "w", "steps": {
  "w": {"stepType": "NO_OP", "delay": {"milliseconds": 86400000, "position": "before"},
        "defaultNextStepInstanceId": "q"},
  "q": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
        "customConfig": {"sql": "SELECT current_user AS who"}, "defaultNextStepInstanceId": "b"},
  "b": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "up/echo"}}}');
RESET ROLE;
SET ROLE bob;
SELECT allma_create_flow('{"id": "b_fork", "startStepInstanceId": "fork", "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
           "parallelBranches": [{"branchId": "x", "stepInstanceId": "w"}]},
  "w": {"stepType": "NO_OP", "delay": {"milliseconds": 86400000, "position": "before"},
        "defaultNextStepInstanceId": "q"},
  "q": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
        "customConfig": {"sql": "SELECT current_user AS who"}}}}');
-- under 1.0 anyone could add a version of anyone's flow
SELECT allma_create_flow('{"id": "a_flow", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}', false);
RESET ROLE;
});

# executions started under 1.0 (whether the workers run them before the
# update or wait for it, they are in flight during the update)
my $done = q1("SET ROLE alice; SELECT allma_start_flow('a_flow', '{}', '{\"version\": 2}')");
my $wait = q1("SET ROLE alice; SELECT allma_start_flow('a_wait')");
my $fork = q1("SET ROLE bob; SELECT allma_start_flow('b_fork', '{\"items\": [1, 2, 3]}')");

# the update, with executions in flight and the workers running
my ($ret, $out, $err) = $node->psql('postgres', 'ALTER EXTENSION allma UPDATE');
is($ret, 0, 'ALTER EXTENSION allma UPDATE succeeds');
like($err, qr/granted allma_user to the roles that used allma 1\.0: alice, bob/,
	'it says which roles it made members of allma_user');
is(q1("SELECT extversion FROM pg_extension WHERE extname = 'allma'"), '1.1', 'now 1.1');
is(q1("SELECT string_agg(rolname, ',' ORDER BY rolname COLLATE \"C\") FROM pg_roles
	   WHERE pg_has_role(oid, 'allma_user', 'MEMBER') AND NOT rolsuper"),
	'alice,allma_admin,allma_user,bob', 'alice and bob are members of allma_user, carol is not');

# ownership from the first version's creator; what everyone could use stays usable
is(q1("SELECT string_agg(flow_id || ':' || owner || ':' || start_grantees::text, ' ' ORDER BY flow_id) FROM allma.flows"),
	'a_flow:alice:{allma_user} a_wait:alice:{allma_user} b_fork:bob:{allma_user}',
	'flows belong to the creators of their first version; allma_user keeps START');
is(q1("SELECT owner || ':' || usage_grantees::text FROM allma.prompts"), 'alice:{allma_user}',
	'the prompt belongs to alice; allma_user keeps USAGE');
is(q1("SELECT usage_grantees::text FROM allma.module_bindings"), '{allma_user}',
	'allma_user keeps USAGE on the binding');
is(q1(q{SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c
	    JOIN pg_namespace n ON n.oid = c.relnamespace
	   WHERE n.nspname = 'allma' AND c.relkind = 'r' AND NOT (c.relrowsecurity AND c.relforcerowsecurity)}),
	'retry_policies', 'row-level security is enabled and forced on every table but retry_policies');

is(q1("SELECT allma_wait('$done', '60 s')"), 'COMPLETED', 'the execution started under 1.0 completes');
ok(poll_until_true($node, "SELECT count(*) = 3 FROM allma.execution_paths WHERE execution_id = '$fork' AND step_instance_id = 'w'"),
	'the fork of bob\'s execution waits in its branches');
ok(poll_until_true($node, "SELECT step_instance_id = 'w' FROM allma.execution_paths WHERE execution_id = '$wait'"),
	'alice\'s execution waits on its delay');

# the new rules hold
($ret, $out, $err) = $node->psql('postgres', q{SET ROLE bob;
SELECT allma_create_flow('{"id": "a_flow", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}')});
like($err, qr/permission denied to change flow "a_flow"/, 'bob can no longer add versions to alice\'s flow');
($ret, $out, $err) = $node->psql('postgres', "SET ROLE carol; SELECT allma_start_flow('a_flow')");
like($err, qr/permission denied for function allma_start_flow/, 'a role that never used allma has no access');
is(q1("SET ROLE bob; SELECT count(*) FROM allma.executions"), '1', 'bob sees only his own execution');
is(q1("SET ROLE alice; SELECT count(*) FROM allma.executions"), '2', 'alice sees her two');
my $again = q1("SET ROLE bob; SELECT allma_start_flow('a_flow', '{}', '{\"version\": 2}')");
is(q1("SELECT allma_wait('$again', '60 s')"), 'COMPLETED', 'bob still starts alice\'s flow (START kept)');
is(q1("SELECT output->'steps_output'->'q'->'rows'->0->>'who' FROM allma.executions WHERE execution_id = '$again'"),
	'bob', 'as himself');

# the executions in flight go on, as their starters
q1("UPDATE allma.execution_paths SET due_at = now() WHERE execution_id IN ('$wait', '$fork') AND status = 'READY'");
is(q1("SELECT allma_wait('$wait', '60 s')"), 'COMPLETED', 'alice\'s execution completes after the update');
is(q1("SELECT output->'steps_output'->'q'->'rows'->0->>'who' FROM allma.executions WHERE execution_id = '$wait'"),
	'alice', 'its SQL step ran as alice, its bound function through the kept USAGE');
is(q1("SELECT allma_wait('$fork', '60 s')"), 'COMPLETED', 'bob\'s fork joins after the update');
is(q1("SET ROLE bob; SELECT count(*) FROM allma.step_executions WHERE execution_id = '$fork' AND step_instance_id = 'q'"),
	'3', 'and bob reads its history');

# a second database reuses the roles
q1("CREATE DATABASE second");
($ret, $out, $err) = $node->psql('second', 'CREATE EXTENSION allma');
is($ret, 0, 'CREATE EXTENSION in a second database reuses the existing roles');
is($node->safe_psql('second', "SELECT count(*) FROM pg_roles WHERE rolname IN ('allma_user', 'allma_admin')"),
	'2', 'the roles are still the same two');
is($node->safe_psql('second', "SELECT pg_has_role('alice', 'allma_user', 'MEMBER')"), 't',
	'memberships are cluster-wide: alice is an allma_user there too');
$node->safe_psql('second', 'DROP EXTENSION allma');
is(q1("SELECT count(*) FROM pg_roles WHERE rolname IN ('allma_user', 'allma_admin')"), '2',
	'DROP EXTENSION leaves the roles');

$node->stop;
done_testing();
