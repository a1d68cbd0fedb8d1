# DROP EXTENSION allma while executions are running (issue 13 #9): refused
# with SQLSTATE 55006 and a hint, CASCADE or not, whoever can see the
# executions; allowed when none is running, or with
# allma.allow_drop_with_running = on (superuser); a non-owner still gets
# PostgreSQL's ownership error.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $node = allma_node('drop', "allma.timer_scale = 1\n");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

# an execution that stays RUNNING: its step waits an hour before it runs
q1(q{SELECT allma_create_flow('{"id": "later", "startStepInstanceId": "a",
  "steps": {"a": {"stepType": "NO_OP", "delay": {"milliseconds": 3600000, "position": "before"}}}}')});
q1(q{SELECT allma_create_flow('{"id": "now", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}')});
my $e = q1("SELECT allma_start_flow('later', '{}')");
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'RUNNING', 'an execution is running');

my ($rc, $out, $err) = $node->psql('postgres', 'DROP EXTENSION allma');
isnt($rc, 0, 'DROP EXTENSION allma fails');
like($err, qr/ERROR:  cannot drop extension allma while 1 execution is running/, 'because an execution is running');
like($err, qr/HINT:  .*SET allma.allow_drop_with_running = on/, 'the hint names the way out');
($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\nDROP EXTENSION allma CASCADE");
like($err, qr/ERROR:  55006: cannot drop extension allma/, 'CASCADE is refused too, SQLSTATE 55006');
($rc, $out, $err) = $node->psql('postgres', 'DROP EXTENSION IF EXISTS allma, plpgsql');
like($err, qr/cannot drop extension allma/, 'so is a DROP naming several extensions');
is(q1("SELECT count(*) FROM pg_extension WHERE extname = 'allma'"), '1', 'the extension is still there');

# a role that does not own the extension gets PostgreSQL's error, not the count
q1('CREATE ROLE alice');
($rc, $out, $err) = $node->psql('postgres', 'SET ROLE alice; DROP EXTENSION allma');
like($err, qr/must be owner of extension allma/, 'a non-owner gets the ownership error');
unlike($err, qr/execution/, 'and learns nothing about executions');
($rc, $out, $err) = $node->psql('postgres', 'SET ROLE alice; SET allma.allow_drop_with_running = on');
like($err, qr/permission denied to set parameter "allma.allow_drop_with_running"/, 'only a superuser may give consent');

# with consent it goes
($rc, $out, $err) = $node->psql('postgres', 'SET allma.allow_drop_with_running = on; DROP EXTENSION allma');
is($rc, 0, 'allma.allow_drop_with_running = on lets a superuser drop it');
is(q1("SELECT count(*) FROM pg_extension WHERE extname = 'allma'"), '0', 'the extension is gone');

# with nothing running the drop needs no consent
q1('CREATE EXTENSION allma');
q1(q{SELECT allma_create_flow('{"id": "now", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}')});
my $done = q1("SELECT allma_start_flow('now', '{}')");
is(q1("SELECT allma_wait('$done', '60 s')"), 'COMPLETED', 'an execution ran to its end');
($rc, $out, $err) = $node->psql('postgres', 'DROP EXTENSION allma');
is($rc, 0, 'DROP EXTENSION allma works when no execution is running');

done_testing();
