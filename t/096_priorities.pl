# Priorities under a backlog: 1,000 executions of a two-step flow with
# mixed priorities (100 at +30, 800 at 0, 100 at -30 seconds of head
# start), committed at once so that the single worker finds the whole
# backlog in its first claim.  Asserted on the recorded order of their
# ends (allma.executions.ended_at), never on durations: the high ones end
# first on average and nearly all before any default one; every low one
# still finishes; and a low-priority execution that has been due for 90
# seconds (aged by hand in the same transaction; a one-step flow) runs before the whole
# backlog, high ones included: waiting longer than the priority gap wins.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $node = allma_node('priorities',
	"allma.max_workers = 1\nallma.batch_size = 10\nallma.max_chain_steps = 1\n");

$node->safe_psql('postgres', q{
SELECT allma_create_flow('{"id": "two", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "b"},
  "b": {"stepType": "NO_OP"}}}');
SELECT allma_create_flow('{"id": "one", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "NO_OP"}}}');
CREATE TABLE started (n int PRIMARY KEY, execution_id uuid NOT NULL, priority int NOT NULL);
});

# one transaction: the worker sees the backlog all at once
$node->safe_psql('postgres', q{
BEGIN;
INSERT INTO started
SELECT g, allma_start_flow('two', jsonb_build_object('n', g), jsonb_build_object('priority', p)), p
  FROM generate_series(1, 1000) g,
       LATERAL (SELECT CASE WHEN g % 10 = 3 THEN 30 WHEN g % 10 = 7 THEN -30 ELSE 0 END AS p) x;
-- the aged one: low priority, but due for 90 s (key: due - (-30 s) = 60 s
-- ago); one step, as the order is per step (a next step is due when the
-- previous one ends, and waits behind the backlog again)
INSERT INTO started VALUES (0, allma_start_flow('one', '{"n": 0}', '{"priority": -30}'), -30);
UPDATE allma.execution_paths SET due_at = due_at - interval '90 s'
 WHERE execution_id = (SELECT execution_id FROM started WHERE n = 0);
COMMIT;
});

ok(poll_until_true($node,
		"SELECT count(*) = 1001 FROM allma.executions WHERE flow_id IN ('one', 'two') AND status <> 'RUNNING'", 600),
	'the whole backlog finished');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM allma.executions WHERE flow_id IN ('one', 'two') AND status = 'COMPLETED'"),
	'1001', 'every execution completed, the low-priority ones included');

# the order of ends: rank 1 ended first
$node->safe_psql('postgres', q{
CREATE TABLE ranked AS
SELECT s.n, s.priority, row_number() OVER (ORDER BY e.ended_at, s.n) AS r
  FROM started s JOIN allma.executions e USING (execution_id);
});
my ($hi, $mid, $lo) = split /\|/, $node->safe_psql('postgres', q{
	SELECT avg(r) FILTER (WHERE priority = 30 AND n > 0)::int,
	       avg(r) FILTER (WHERE priority = 0)::int,
	       avg(r) FILTER (WHERE priority = -30 AND n > 0)::int FROM ranked});
note "mean rank of ends: high $hi, default $mid, low $lo";
ok($hi < $mid && $mid < $lo, 'on average high priority ends first, low last');
# a claim takes 10 paths in key order: the high ones' first steps, then
# their second steps (due now, still 30 s ahead), before any default one
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM ranked WHERE priority = 30 AND r > 120}),
	'0', 'every high-priority execution is among the first 120 to end');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM ranked WHERE priority = -30 AND n > 0 AND r <= 880}),
	'0', 'the low-priority ones end after the default ones');
cmp_ok($node->safe_psql('postgres', 'SELECT r FROM ranked WHERE n = 0'), '<=', 20,
	'a low-priority execution due 90 s ago ends before the backlog (aging)');

$node->stop;
done_testing();
