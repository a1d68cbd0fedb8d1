# Pictures opened by the tools people use: Graphviz (dot) renders the DOT
# graph of each of the 14 real flows of the Allma export bundles, and of an
# execution, without an error or a warning; headless Chromium opens an
# execution timeline SVG directly, parses it as SVG and takes a screenshot,
# kept under the test's output directory (tmp_check/pictures/).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Cwd ();
use File::Path qw(make_path);
use IPC::Run;
use JSON::PP;
use lib 't';
use AllmaTest;

# both come with scripts/install-deps.sh (Debian graphviz and chromium)
for my $tool ('dot', 'chromium')
{
	die "$tool is not installed (scripts/install-deps.sh installs it)"
	  unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}

my $out = "$PostgreSQL::Test::Utils::tmp_check/pictures";
make_path($out);
$out = Cwd::abs_path($out);

my $node = allma_node('pictures', "allma.timer_scale = 0.01\n");

# dollar-quotes text with a tag it does not contain
sub dq
{
	my ($text) = @_;
	my $n = 0;
	$n++ while index($text, "\$q$n\$") >= 0;
	return "\$q$n\$$text\$q$n\$";
}

# run_tool(cmd...): exit code, stdout, stderr; a run is bounded to 120 s
sub run_tool
{
	my @cmd = @_;
	my ($stdout, $stderr) = ('', '');
	my $ok = IPC::Run::run(\@cmd, '<', \undef, '>', \$stdout, '2>', \$stderr,
		IPC::Run::timeout(120));
	return ($ok ? 0 : ($? >> 8 || 1), $stdout, $stderr);
}

# render_dot(name, dot text): renders to SVG with Graphviz; the SVG text
sub render_dot
{
	my ($name, $text) = @_;
	my $file = "$out/$name.dot";
	open my $fh, '>', $file or die "$file: $!";
	print $fh $text;
	close $fh;
	my ($rc, $stdout, $stderr) = run_tool('dot', '-Tsvg', $file, '-o', "$out/$name.svg");
	is($rc, 0, "dot renders $name");
	is($stderr, '', "dot renders $name without warnings");
	return -f "$out/$name.svg" ? slurp_file("$out/$name.svg") : '';
}

#
# The graphs of the real flows
#
my $src = -d 'test/fixtures' ? '.' : ($ENV{ALLMA_SRC} // '.');
my @bundles = sort glob("$src/test/fixtures/allma-example-flows/*.json");
my @flows;
for my $bundle (@bundles)
{
	my $data = JSON::PP->new->decode(slurp_file($bundle));
	push @flows, @{ $data->{flows} };
}
is(scalar(@flows), 14, 'the example bundles hold 14 flows');

for my $flow (@flows)
{
	my $json = JSON::PP->new->canonical->encode($flow);
	$node->safe_psql('postgres', 'SELECT allma_create_flow(' . dq($json) . '::jsonb)');
	my $dot = $node->safe_psql('postgres',
		"SELECT allma_flow_graph('$flow->{id}', format => 'dot')");
	my $svg = render_dot($flow->{id}, $dot);

	# every step is a node of the picture, with its id as the first label line
	my @missing = grep { index($svg, ">$_</text>") < 0 } sort keys %{ $flow->{steps} };
	is("@missing", '', "every step of $flow->{id} is drawn");
	my $nodes = () = $svg =~ /<g id="node\d+" class="node">/g;
	cmp_ok($nodes, '>=', scalar(keys %{ $flow->{steps} }) + 1,
		"$flow->{id}: a node per step and the start marker");
}

#
# An execution: a catch, a fork of 14 branches (two failing, tolerated), a
# retry and a fallback
#
$node->safe_psql('postgres', q{
CREATE SEQUENCE public.pic_calls;
GRANT ALL ON public.pic_calls TO PUBLIC;
CREATE FUNCTION public.pic_module(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF input ? 'fail' THEN
		RAISE EXCEPTION 'failing on purpose' USING ERRCODE = 'P0001',
			DETAIL = jsonb_build_object('errorName', input->>'fail')::text;
	END IF;
	IF input ? 'flaky' AND nextval('public.pic_calls') <= 2 THEN
		RAISE EXCEPTION 'not yet' USING ERRCODE = 'LM201';
	END IF;
	RETURN jsonb_build_object('ok', true);
END $$;
SELECT allma_bind_module('pic/module', 'public.pic_module(jsonb)');
});
$node->safe_psql('postgres', 'SELECT allma_create_flow(' . dq(q{
{"id": "pic-tour", "startStepInstanceId": "prepare",
 "steps": {
  "prepare": {"stepType": "NO_OP", "defaultNextStepInstanceId": "risky"},
  "risky": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "pic/module", "literals": {"fail": "Oops"},
            "onError": {"catch": [{"errorEquals": ["Oops"], "nextStepInstanceId": "fan"}]},
            "defaultNextStepInstanceId": "fan"},
  "fan": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
          "parallelBranches": [{"branchId": "item", "stepInstanceId": "check"}],
          "aggregationConfig": {"failOnBranchError": false, "maxConcurrency": 4},
          "defaultNextStepInstanceId": "flaky"},
  "check": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "pic/module",
            "inputMappings": {"fail": "$.currentItem.fail"}, "defaultNextStepInstanceId": "store"},
  "store": {"stepType": "NO_OP", "delay": {"milliseconds": 500, "position": "before"}},
  "flaky": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "pic/module", "literals": {"flaky": true},
            "onError": {"retries": {"count": 3, "intervalSeconds": 2, "backoffRate": 2}},
            "defaultNextStepInstanceId": "doomed"},
  "doomed": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "pic/module", "literals": {"fail": "Doom"},
             "onError": {"fallbackStepInstanceId": "finish"}, "defaultNextStepInstanceId": "finish"},
  "finish": {"stepType": "END_FLOW"}
 }}}) . '::jsonb)');
my $items = join(', ', map { $_ == 4 || $_ == 9 ? qq{{"fail": "Bad$_"}} : qq{{"n": $_}} } 1 .. 14);
my $e = $node->safe_psql('postgres',
	qq{SELECT allma_start_flow('pic-tour', '{"items": [$items]}')});
is($node->safe_psql('postgres', "SELECT allma_wait('$e', '120 s')"), 'COMPLETED',
	'the execution completes');

my $graph = $node->safe_psql('postgres', "SELECT allma_execution_graph('$e', 'dot')");
like($graph, qr/branch item: 12 done, 2 failed/, 'the execution graph counts the branches');
my $gsvg = render_dot('execution-graph', $graph);
like($gsvg, qr/>flaky<\/text>/, 'the execution graph renders');

#
# The timeline in Chromium
#
my $svg = $node->safe_psql('postgres', "SELECT allma_execution_timeline('$e')");
my $attempts = $node->safe_psql('postgres',
	"SELECT count(*) FROM allma.step_executions WHERE execution_id = '$e'");
my $file = "$out/timeline.svg";
open my $fh, '>', $file or die "$file: $!";
print $fh $svg;
close $fh;
my ($height) = $svg =~ /^<svg [^>]*height="(\d+)"/;
ok($height, 'the timeline says its size');

# a fresh profile and home for each run; no network, no background services
my $profile = PostgreSQL::Test::Utils::tempdir();
my @chromium = ('env', "HOME=$profile", "XDG_CONFIG_HOME=$profile", "XDG_CACHE_HOME=$profile",
	'chromium', '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
	'--disable-background-networking', '--disable-component-update', '--disable-sync',
	"--user-data-dir=$profile/profile");

my ($rc, $dom, $stderr) = run_tool(@chromium, '--dump-dom', "file://$file");
is($rc, 0, 'chromium opens the timeline');
like($dom, qr/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/, 'chromium reads the file as SVG');
unlike($dom, qr/This page contains the following errors|error on line/i,
	'chromium reports no XML error');
my $bars = () = $dom =~ /<rect class="bar /g;
# the four branches left out are done ones (failed ones are shown first), of two attempts each
is($bars, $attempts - 4 * 2, "chromium sees one bar per step attempt shown");
my $rows = () = $dom =~ /<g class="row branch">/g;
is($rows, 10, 'ten branch rows are drawn');
like($dom, qr/\.\.\. 4 more branches/, 'the other branches are summed up');

my $png = "$out/timeline.png";
($rc, undef, $stderr) = run_tool(@chromium, "--window-size=1200,$height",
	"--screenshot=$png", "file://$file");
is($rc, 0, 'chromium takes a screenshot of the timeline');
ok(-s $png && -s $png > 10000, 'the screenshot has content');
my $magic = '';
if (open my $ph, '<:raw', $png)
{
	read($ph, $magic, 8);
	close $ph;
}
is($magic, "\x89PNG\r\n\x1a\n", 'the screenshot is a PNG');
note("timeline screenshot: $png");

$node->stop;
done_testing();
