# Fuzzing the parsers (issue 13): grammar-aware inputs from
# scripts/fuzz-parsers.py (templates, conditions, JSONPaths, dot paths,
# valid-looking and mutated) go through the SQL functions that parse and
# evaluate them; each may fail with any error but an internal one (XX...),
# and the server must neither crash nor restart.  The inputs of
# test/corpus/fuzz/regressions.tsv (kept crashers, "kind<TAB>hex") run
# first.  CI runs ALLMA_FUZZ_INPUTS (default 20,000) inputs of seed
# ALLMA_FUZZ_SEED (default 1); a long run: ALLMA_FUZZ_INPUTS=1000000.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $src = $ENV{ALLMA_SRC} // '.';
my $count = $ENV{ALLMA_FUZZ_INPUTS} // 20000;
my $seed = $ENV{ALLMA_FUZZ_SEED} // 1;

my $node = allma_node('fuzz');
sub q1 { return $node->safe_psql('postgres', $_[0]); }

q1(q{
CREATE FUNCTION tcheck(text) RETURNS text AS '$libdir/allma', 'allma_test_template_check' LANGUAGE C STRICT;
CREATE FUNCTION ccheck(text) RETURNS text AS '$libdir/allma', 'allma_test_condition_check' LANGUAGE C STRICT;
CREATE FUNCTION pcheck(text, text) RETURNS text AS '$libdir/allma', 'allma_test_path_check' LANGUAGE C STRICT;
CREATE FUNCTION dotpath_set(jsonb, text, jsonb) RETURNS jsonb AS '$libdir/allma', 'allma_test_dotpath_set' LANGUAGE C;
CREATE FUNCTION fuzz_one(kind text, b bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	s text := convert_from(b, 'UTF8');
	ctx jsonb := '{"a": {"b": [1, 2, {"c": "x"}]}, "b": "s", "xs": [1, 2, 3], "items": [{"a": 1}, {"a": 2}],
	               "n": 5, "name": "N", "o": {"k": 1, "a": [true, null]}, "k": "v", "arr": [1, 5, 10], "x_1": 0}';
	st text;
BEGIN
	IF kind = 'template' THEN
		PERFORM tcheck(s);
		PERFORM allma_render_template(s, ctx);
	ELSIF kind = 'condition' THEN
		PERFORM ccheck(s);
		PERFORM allma_eval_condition(s, ctx);
	ELSIF kind = 'path' THEN
		PERFORM pcheck(s, 'path');
		PERFORM pcheck(s, 'settable');
		PERFORM allma_path_query(ctx, s);
	ELSE
		PERFORM pcheck(s, 'dot');
		PERFORM dotpath_set(ctx, s, '1');
	END IF;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
	RETURN st;
END $$;
-- a template bomb among the inputs ends quickly
ALTER DATABASE postgres SET allma.template_max_iterations = 10000;
});

my $started = q1('SELECT pg_postmaster_start_time()');
my @inputs;
if (open(my $reg, '<', "$src/test/corpus/fuzz/regressions.tsv"))
{
	while (my $line = <$reg>)
	{
		chomp $line;
		push @inputs, [ split(/\t/, $line, 2) ] if $line =~ /^(template|condition|path|dotpath)\t[0-9a-f]*$/;
	}
	close($reg);
}
my $kept = scalar(@inputs);
open(my $gen, '-|', 'python3', "$src/scripts/fuzz-parsers.py", $count, $seed) or die "fuzz-parsers.py: $!";
while (my $line = <$gen>)
{
	chomp $line;
	push @inputs, [ split(/\t/, $line, 2) ];
}
close($gen) or die "fuzz-parsers.py failed";
is(scalar(@inputs), $kept + $count, "$count generated inputs (seed $seed) and $kept kept ones");

my (%by_state, @internal);
while (my @batch = splice(@inputs, 0, 500))
{
	my $values = join(',', map { "('$_->[0]', '\\x$_->[1]'::bytea)" } @batch);
	my $res = q1("SELECT k || ' ' || fuzz_one(k, b) || ' ' || encode(b, 'hex') FROM (VALUES $values) v(k, b)");
	for my $line (split /\n/, $res)
	{
		my ($kind, $state, $hex) = split / /, $line;
		$by_state{"$kind $state"}++;
		push @internal, "$kind\t" . ($hex // '') if $state =~ /^XX/;
	}
}
diag(join(', ', map { "$_: $by_state{$_}" } sort keys %by_state));
is_deeply(\@internal, [], 'no input causes an internal error (keep any found in test/corpus/fuzz/regressions.tsv)');
ok((grep { / ok$/ } keys %by_state) >= 3, 'valid inputs of several kinds were among them');
ok((grep { !/ ok$/ } keys %by_state) >= 3, 'and invalid ones');
is(q1('SELECT pg_postmaster_start_time()'), $started, 'the server never restarted');
unlike(slurp_file($node->logfile), qr/terminated by signal|was terminated/, 'no backend crashed');

done_testing();
