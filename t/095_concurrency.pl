# Concurrency keys under a backlog: 1,000 executions over four keys with
# limits 1, 2, 3 and 5, worked off by two workers.  Checked three ways:
#  - sampling: at no sampled moment do more executions of a key run than
#    its limit;
#  - a log: a trigger records every change of status of the executions
#    (start QUEUED, admitted RUNNING, ended) with its transaction; with
#    commit timestamps, replaying the log per key in commit order (within a
#    transaction: ends before admissions) never passes the limit, and no
#    step of an execution started before the commit that admitted it;
#  - order: per key, the executions were admitted in the order they were
#    started.
# And all complete, leaving no slot and no queue row behind.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $node = allma_node('concurrency', "track_commit_timestamp = on\n");
sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

my %limit = (t0 => 1, t1 => 2, t2 => 3, t3 => 5);
my $total = 1000;

q1(q{
CREATE TABLE cc_log (id bigserial PRIMARY KEY, execution_id uuid NOT NULL, n int NOT NULL,
					 concurrency_key text NOT NULL, old_status text, new_status text NOT NULL,
					 xid xid8 NOT NULL DEFAULT pg_current_xact_id());
CREATE FUNCTION cc_log_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.concurrency_key IS NOT NULL AND NEW.flow_id = 'cc' THEN
		INSERT INTO public.cc_log (execution_id, n, concurrency_key, old_status, new_status)
		VALUES (NEW.execution_id, (NEW.input->>'n')::int, NEW.concurrency_key,
				CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status);
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER cc_log AFTER INSERT OR UPDATE OF status ON allma.executions
	FOR EACH ROW EXECUTE FUNCTION cc_log_status();
});
q1(q{SELECT allma_create_flow('{"id": "cc", "startStepInstanceId": "work", "steps": {
  "work": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
           "customConfig": {"sql": "SELECT pg_sleep(0.002)"}, "defaultNextStepInstanceId": "done"},
  "done": {"stepType": "NO_OP"}}}')});

# started in ten transactions while the workers already run the first ones;
# n is the arrival order, the key n % 4
for my $batch (0 .. 9)
{
	my $from = $batch * 100 + 1;
	my $to = $from + 99;
	q1(qq{DO \$\$
		DECLARE lim jsonb := '{"t0": 1, "t1": 2, "t2": 3, "t3": 5}';
		BEGIN
			FOR n IN $from .. $to LOOP
				PERFORM allma_start_flow('cc', jsonb_build_object('n', n),
					jsonb_build_object('concurrencyKey', 't' || (n % 4),
									   'maxConcurrent', lim->('t' || (n % 4))));
			END LOOP;
		END \$\$});
}

# sample until all are done
my $samples = 0;
my $over = '';
my $max_seen = 0;
my $deadline = time() + 300;
while (time() < $deadline)
{
	my $out = q1(q{
		SELECT coalesce(string_agg(concurrency_key || '=' || n, ' '), '') || '|' ||
			   (SELECT count(*) FROM allma.executions WHERE flow_id = 'cc' AND status = 'COMPLETED')
		  FROM (SELECT concurrency_key, count(*) AS n FROM allma.executions
				 WHERE flow_id = 'cc' AND status = 'RUNNING' GROUP BY 1) r});
	my ($running, $done) = split /\|/, $out;
	$samples++;
	for my $kv (split / /, $running // '')
	{
		my ($k, $n) = split /=/, $kv;
		$over .= " $k=$n" if $n > $limit{$k};
		$max_seen = $n if $n > $max_seen;
	}
	last if $done == $total;
	select(undef, undef, undef, 0.02);
}
cmp_ok($samples, '>', 5, "sampled the backlog ($samples samples)");
is($over, '', 'no sample saw more executions of a key running than its limit');
cmp_ok($max_seen, '>', 1, 'some key ran several executions at once (the limits were used)');
is(q1(q{SELECT string_agg(status || '=' || n, ' ' ORDER BY status) FROM
		 (SELECT status, count(*) AS n FROM allma.executions WHERE flow_id = 'cc' GROUP BY 1) s}),
	"COMPLETED=$total", 'all executions completed');
is(q1(q{SELECT count(*) FROM allma.concurrency_slots}), '0', 'no slot is left');
is(q1(q{SELECT count(*) FROM allma.concurrency_queue}), '0', 'no queue row is left');
is(q1(q{SELECT count(*) FILTER (WHERE queued_at < started_at) > 0 FROM allma.executions WHERE flow_id = 'cc'}),
	't', 'executions waited in the queue');

# the log, in commit order
my $events = q1(q{SELECT count(*) FROM cc_log});
cmp_ok($events, '>=', 3 * $total, "the log recorded every start, admission and end ($events events)");
is(q1(q{SELECT count(*) FROM cc_log WHERE new_status = 'RUNNING' AND old_status = 'QUEUED'}), $total,
	'every execution was admitted once');
my $replay = q1(q{
	WITH ev AS (
		SELECT l.*, pg_xact_commit_timestamp(l.xid::text::xid) AS committed,
			   CASE WHEN l.new_status = 'RUNNING' THEN 1
					WHEN l.old_status = 'RUNNING' THEN -1 ELSE 0 END AS delta
		  FROM cc_log l),
	run AS (
		SELECT concurrency_key,
			   sum(delta) OVER (PARTITION BY concurrency_key
								ORDER BY committed, delta, id ROWS UNBOUNDED PRECEDING) AS running
		  FROM ev)
	SELECT string_agg(concurrency_key || '=' || m, ' ' ORDER BY concurrency_key)
	  FROM (SELECT concurrency_key, max(running) AS m FROM run GROUP BY 1) x});
is($replay, join(' ', map { "$_=$limit{$_}" } sort keys %limit),
	'replayed in commit order, each key ran exactly up to its limit, never more');
is(q1(q{SELECT count(*) FROM cc_log WHERE pg_xact_commit_timestamp(xid::text::xid) IS NULL}), '0',
	'every logged change committed (commit timestamps known)');
is(q1(q{
	SELECT count(*) FROM cc_log a
	 WHERE a.new_status = 'RUNNING'
	   AND EXISTS (SELECT FROM allma.step_executions s
				   WHERE s.execution_id = a.execution_id
					 AND s.started_at < pg_xact_commit_timestamp(a.xid::text::xid))}), '0',
	'no step of an execution started before its admission committed');

# arrival order: per key, admissions in commit order have increasing n
is(q1(q{
	WITH adm AS (
		SELECT concurrency_key, n,
			   lag(n) OVER (PARTITION BY concurrency_key
							ORDER BY pg_xact_commit_timestamp(xid::text::xid), n) AS prev
		  FROM cc_log WHERE new_status = 'RUNNING')
	SELECT count(*) FROM adm WHERE prev > n}), '0',
	'each key admitted its executions in arrival order');

$node->stop;
done_testing();
