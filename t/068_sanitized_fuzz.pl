# Fuzzing the parsers on a sanitized build (issue 13).  fuzz/build.sh
# builds allma with gcc's UndefinedBehaviorSanitizer (make SANITIZE=1, every
# report fatal) into a private copy of PostgreSQL; a server started from it
# runs the grammar-aware inputs of scripts/fuzz-parsers.py of every kind
# (templates, conditions, JSONPaths, dot paths, DynamoDB filter, key
# condition, update and projection expressions) through fuzz/harness.sql.
# Kept inputs (test/corpus/fuzz/regressions.tsv, fuzz/corpus/*.tsv) run
# first.  Fails on any sanitizer report, crash, restart or internal error.
# Skipped only when gcc cannot build and run a sanitized program.
#   ALLMA_FUZZ_INPUTS (default 30,000), ALLMA_FUZZ_SEED (default 1),
#   ALLMA_FUZZ_ROOT: reuse this PostgreSQL copy (default: a fresh one).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Spec;
use IPC::Run;
use Time::HiRes qw(time);

my $src = File::Spec->rel2abs($ENV{ALLMA_SRC} // '.');
my $count = $ENV{ALLMA_FUZZ_INPUTS} // 30000;
my $seed = $ENV{ALLMA_FUZZ_SEED} // 1;
my $tmp = File::Spec->rel2abs(PostgreSQL::Test::Utils::tempdir());

# the compiler and its sanitizer runtime: a program with UB must be caught
{
	open(my $c, '>', "$tmp/ub.c") or die;
	print $c "#include <stdlib.h>\nint main(int argc, char **argv) { int x = atoi(argv[1]); return x << 40; }\n";
	close($c);
	# (no gcc at all: run_log dies, which is the same "absent")
	my $ok = eval { run_log([ 'gcc', '-fsanitize=undefined', '-fno-sanitize-recover=all', '-o', "$tmp/ub", "$tmp/ub.c" ]) };
	plan skip_all => 'gcc with its UndefinedBehaviorSanitizer runtime (libubsan) is not installed '
	  . '(scripts/install-deps.sh installs it)'
	  unless $ok;
	my ($out, $err) = ('', '');
	IPC::Run::run([ "$tmp/ub", '1' ], '>', \$out, '2>', \$err);
	like($err, qr/runtime error: shift exponent/, 'the sanitizer runtime reports undefined behaviour');
}

my $root = $ENV{ALLMA_FUZZ_ROOT} // "$tmp/pgroot";
my ($built, $pg_config) = (0, '');
{
	my ($err) = ('');
	$built = IPC::Run::run([ "$src/fuzz/build.sh", $root, "$tmp/build" ], '>', \$pg_config, '2>', \$err);
	chomp $pg_config;
	diag("fuzz/build.sh: $err") unless $built;
}
ok($built, 'fuzz/build.sh built and installed the sanitized extension');
unless ($built)
{
	done_testing();
	exit 0;
}

# gcc's UBSan runtime comes in with allma.so (no LD_PRELOAD needed); a
# report aborts the backend: "terminated by signal 6" and the report itself
# in the server log
$ENV{UBSAN_OPTIONS} = 'print_stacktrace=1:halt_on_error=1:abort_on_error=1';
my $install = $pg_config =~ s{/bin/pg_config$}{}r;
my $node = PostgreSQL::Test::Cluster->new('sanitized', install_path => $install);
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'allma'
allma.database_name = 'postgres'
allma.max_workers = 2
max_worker_processes = 16
restart_after_crash = on
jit = off
# the batches are large: log the reports, not the statements
log_statement = none
});
$node->start;
sub q1 { return $node->safe_psql('postgres', $_[0]); }
q1('CREATE EXTENSION allma');
is(q1("SELECT pg_read_file('/proc/self/maps') ~ 'libubsan' AND "
	  . "pg_read_file('/proc/self/maps') ~ " . $node->safe_psql('postgres', "SELECT quote_literal('$install/lib/allma.so')")),
	't', 'a backend runs the sanitized allma.so of the private installation');
q1(slurp_file("$src/fuzz/harness.sql"));

my @kept;
for my $file ("$src/test/corpus/fuzz/regressions.tsv", sort glob("$src/fuzz/corpus/*.tsv"))
{
	open(my $reg, '<', $file) or next;
	while (my $line = <$reg>)
	{
		chomp $line;
		push @kept, [ split(/\t/, $line, 2) ] if $line =~ /^[a-z]+\t[0-9a-f]*$/;
	}
	close($reg);
}
# the generated inputs are read as they are fed (a long run holds one batch)
open(my $gen, '-|', 'python3', "$src/scripts/fuzz-parsers.py", $count, $seed, 'all') or die "fuzz-parsers.py: $!";
my $generated = 0;
sub next_batch
{
	my @batch = splice(@kept, 0, 1000);
	while (@batch < 1000 && defined(my $line = <$gen>))
	{
		chomp $line;
		push @batch, [ split(/\t/, $line, 2) ];
		$generated++;
	}
	return @batch;
}
my $kept = scalar(@kept);

# run_batch(inputs): psql's exit code and output for these inputs
sub run_batch
{
	my $values = join(',', map { "('$_->[0]', '\\x$_->[1]'::bytea)" } @_);
	my ($ret, $res, $err) = $node->psql('postgres',
		"SELECT k || ' ' || fuzz_one(k, b) || ' ' || encode(b, 'hex') FROM (VALUES $values) v(k, b)");
	return ($ret, $res);
}

# wait_up(): until the server accepts queries again (after a crash)
sub wait_up
{
	for (my $i = 0; $i < 600; $i++)
	{
		my ($ret) = $node->psql('postgres', 'SELECT 1');
		return 1 if $ret == 0;
		select(undef, undef, undef, 0.5);
	}
	return 0;
}

my (%by_state, @internal, $crasher);
my ($fed, $t0) = (0, time);
while (my @batch = next_batch())
{
	my ($ret, $res) = run_batch(@batch);
	if ($ret != 0)
	{
		# a backend died: find the first input that kills it, alone, and stop
		$crasher = 'not found again (see the server log)';
		for my $in (@batch)
		{
			wait_up() or last;
			my ($r1) = run_batch($in);
			if ($r1 != 0)
			{
				$crasher = "$in->[0]\t$in->[1]";
				last;
			}
		}
		wait_up();
		last;
	}
	$fed += scalar(@batch);
	for my $line (split /\n/, $res)
	{
		my ($kind, $state, $hex) = split / /, $line;
		$by_state{"$kind $state"}++;
		push @internal, "$kind\t" . ($hex // '') if $state =~ /^XX/;
	}
}
close($gen);
diag(sprintf("%d inputs in %.0f s: ", $fed, time - $t0) . join(', ', map { "$_: $by_state{$_}" } sort keys %by_state));
is($fed, $kept + $count, "fed $count generated inputs (seed $seed) and $kept kept ones");
is($crasher, undef, 'no input crashes a backend (keep a crasher printed here in fuzz/corpus/)');
is_deeply(\@internal, [], 'no input causes an internal error (keep any found in fuzz/corpus/)');
my %ok_kinds = map { (split / /)[0] => 1 } grep { / ok$/ } keys %by_state;
is(join(',', sort keys %ok_kinds), 'condition,ddbcond,ddbkey,ddbproj,ddbupdate,dotpath,path,template',
	'valid inputs of every kind were among them');
ok((grep { !/ ok$/ } keys %by_state) >= 8, 'and invalid ones');
my @reports = grep { /runtime error|Sanitizer|terminated by signal|exited with exit code/ }
  split(/\n/, slurp_file($node->logfile));
is_deeply(\@reports, [], 'no sanitizer report, no backend crashed');
$node->stop;

done_testing();
