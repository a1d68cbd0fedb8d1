# The examples of docs/steps.md run as documented.  Every example there is
# a flow definition in a block tagged "json allma-example name=N", with an
# optional "sql allma-setup name=N" block run before it (bindings, child
# flows, tables) and a "json allma-expect name=N" block saying how to start
# it and how it ends:
#   {"input": {...}, "resume": {"key": K, "payload": {...}},
#    "status": "COMPLETED", "output": {"<jsonpath>": <value>, ...},
#    "error": {"<jsonpath>": <value>, ...}}
# (jsonpaths are PostgreSQL's, over executions.output resp. .error; the
# value true means only "is there").  The examples address the mock server
# as http://127.0.0.1:8080 and its SMTP server as 127.0.0.1:2525, as a
# reader would start it; this test substitutes the ports it got.
#
# It also fails when a step type of the engine's step table (src/step.c,
# each one accepted by allma_validate_flow in the running server) or a
# built-in module has no example.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use lib 't';
use AllmaTest;

my $src = $ENV{ALLMA_SRC} // '..';
my $doc = slurp_file("$src/docs/steps.md");

# the blocks of the document
my (%flow, %setup, %expect, @order);
while ($doc =~ /^```(\w+) allma-(example|setup|expect) name=([\w-]+)[ \t]*\n(.*?)^```[ \t]*$/msg)
{
	my ($lang, $kind, $name, $body) = ($1, $2, $3, $4);
	if ($kind eq 'example')
	{
		die "example $name twice in docs/steps.md" if exists $flow{$name};
		$flow{$name} = $body;
		push @order, $name;
	}
	elsif ($kind eq 'setup')
	{
		$setup{$name} .= $body;
	}
	else
	{
		die "expectation of $name twice in docs/steps.md" if exists $expect{$name};
		$expect{$name} = $body;
	}
}
cmp_ok(scalar(@order), '>=', 30, 'docs/steps.md has its examples');
for my $n (sort(keys %setup), sort(keys %expect))
{
	ok(exists $flow{$n}, "block of $n belongs to an example") or diag "no example named $n";
}

my $json = JSON::PP->new->canonical;

# what the engine has: the rows of the step-type table and the built-in
# modules' identifiers, read from the sources the server was built from
my $step_c = slurp_file("$src/src/step.c");
my @types = $step_c =~ /^\s*\{"([A-Z_]+)", ALLMA_MODULE_\w+,/mg;
cmp_ok(scalar(@types), '>=', 21, 'the step-type table of src/step.c is read');
# the modules: the rows of every AllmaBuiltinModule array under src/, the
# identifier written out or a #define of one
my (%define, @arrays);
my @files = ("$src/src");
while (my $f = shift @files)
{
	if (-d $f)
	{
		opendir(my $dh, $f) or die "cannot read $f: $!";
		push @files, map { "$f/$_" } grep { !/^\./ } readdir $dh;
		closedir $dh;
		next;
	}
	next unless $f =~ /\.[ch]$/;
	my $text = slurp_file($f);
	$define{$1} = $2 while $text =~ /^#define\s+(\w+)\s+"(system\/[a-z0-9-]+)"/mg;
	push @arrays, $1 while $text =~ /\bAllmaBuiltinModule\s+\w+\[\]\s*=\s*\{(.*?)\n\};/sg;
}
my @modules;
for my $rows (@arrays)
{
	while ($rows =~ /^\s*\{\s*(?:"(system\/[a-z0-9-]+)"|(\w+))\s*,/mg)
	{
		next if defined $2 && $2 eq 'NULL';
		my $m = $1 // $define{$2};
		die "module identifier $2 of a module table is not a #define of src/" unless defined $m;
		push @modules, $m;
	}
}
cmp_ok(scalar(@modules), '>=', 16, 'the built-in modules are read');

my ($base, $smtp) = start_mock(smtp => 1);
my $node = allma_node('step_examples', qq{
allma.http_allowlist = '127.0.0.1'
allma.smtp_url = 'smtp://127.0.0.1:$smtp'
allma.timer_scale = 0.01
});

sub q1 { return $node->safe_psql('postgres', $_[0]); }
sub lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }

# the server agrees: each type of the table is a stepType it knows (an
# unknown one is LM101), and the transformation modules it lists are read
for my $t (@types)
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT allma_validate_flow(" . lit(qq({"id": "probe", "startStepInstanceId": "s", "steps": {"s": {"stepType": "$t"}}})) . ")");
	unlike($err, qr/unknown stepType/, "the server knows step type $t");
}
my (undef, undef, $hint) = $node->psql('postgres', "SELECT allma_run_module('system/none', '{}')");
my ($listed) = $hint =~ /The built-in modules are ([^\n]*)\./;
ok(defined $listed, 'the server lists its transformation modules');
for my $m (split /, /, $listed // '')
{
	ok((grep { $_ eq $m } @modules), "module $m of the server is in the sources read");
}

# every type and module has an example
my $all = join("\n", map { $flow{$_} } @order);
for my $t (@types)
{
	ok($all =~ /"stepType":\s*"\Q$t\E"/, "step type $t has an example");
}
for my $m (@modules)
{
	ok($all =~ /"moduleIdentifier":\s*"\Q$m\E"/, "module $m has an example");
}

sub mocked
{
	my ($s) = @_;
	$s =~ s{http://127\.0\.0\.1:8080}{$base}g;
	$s =~ s{127\.0\.0\.1:2525}{127.0.0.1:$smtp}g;
	return $s;
}

# run each example
for my $name (@order)
{
	my $exp = eval { $json->decode($expect{$name} // '') };
	ok($exp, "example $name has an expectation") or next;
	my $def = eval { $json->decode(mocked($flow{$name})) };
	ok($def, "example $name is JSON") or next;

	if (defined $setup{$name})
	{
		my ($ret, $out, $err) = $node->psql('postgres', mocked($setup{$name}), on_error_stop => 1);
		is($ret, 0, "setup of $name runs") or diag $err;
	}
	my ($ret, $out, $err) = $node->psql('postgres',
		'SELECT allma_create_flow(' . lit($json->encode($def)) . ')', on_error_stop => 1);
	is($ret, 0, "example $name is a valid flow") or do { diag $err; next };
	my $input = $json->encode($exp->{input} // {});
	my $e = q1("SELECT allma_start_flow(" . lit($def->{id}) . ", " . lit(mocked($input)) . ")");

	if (my $r = $exp->{resume})
	{
		ok(poll_until_true($node, "SELECT EXISTS (SELECT FROM allma.waits WHERE execution_id = '$e' AND status = 'OPEN' AND correlation_key = " . lit($r->{key}) . ")"),
			"$name waits on $r->{key}");
		q1("SELECT allma_resume_flow(" . lit($r->{key}) . ", " . lit($json->encode($r->{payload} // {})) . ")");
	}

	# ends: a generous bound, checked by polling the status
	ok(poll_until_true($node, "SELECT status <> 'RUNNING' FROM allma.executions WHERE execution_id = '$e'", 240),
		"$name ends");
	my $row = q1("SELECT status || ' ' || coalesce(error::text, '') FROM allma.executions WHERE execution_id = '$e'");
	my ($status) = split / /, $row;
	is($status, $exp->{status}, "$name ends $exp->{status}") or diag "$name: $row";

	for my $col ('output', 'error')
	{
		my $want = $exp->{$col} or next;
		for my $path (sort keys %$want)
		{
			my $got = q1("SELECT jsonb_path_query_first($col, " . lit($path) . ") FROM allma.executions WHERE execution_id = '$e'");
			if (JSON::PP::is_bool($want->{$path}) && $want->{$path})
			{
				isnt($got, '', "$name: $col $path is there");
			}
			else
			{
				my $same = q1("SELECT " . lit($got eq '' ? 'null' : $got) . "::jsonb = " . lit(mocked($json->encode($want->{$path}))) . "::jsonb");
				is($same, 't', "$name: $col $path") or diag "$name: $col $path is $got";
			}
		}
	}
}

$node->stop;
done_testing();
