# The bad-input corpus (issue 13): every file of test/corpus/definitions/
# (made by scripts/gen-bad-definitions.py: broken JSON, invalid UTF-8, NUL
# bytes, wrong types, dangling references, bad paths, conditions and
# templates, absurd numbers, 10,000-deep nesting, megabyte strings,
# non-http schemes, unknown names) is given to allma_create_flow as bytes
# (decoded as UTF-8, cast to jsonb: what a client can send) and must be
# rejected with the SQLSTATE and message pinned in MANIFEST.tsv; none is
# stored, none is an internal error, and the server stays up throughout.
#
# ALLMA_CORPUS_RECORD=FILE writes a new manifest to FILE (a path the test's
# user can write) from what the server says, instead of comparing: after
# changing the corpus or a message on purpose, copy it over MANIFEST.tsv and
# review the diff.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $src = $ENV{ALLMA_SRC} // '.';
my $dir = "$src/test/corpus/definitions";
my $manifest = "$dir/MANIFEST.tsv";
my $record = $ENV{ALLMA_CORPUS_RECORD};

my $node = allma_node('corpus');
sub q1 { return $node->safe_psql('postgres', $_[0]); }

# "SQLSTATE<TAB>message" (message: first 200 characters, line breaks and
# tabs escaped), or "ok" when the definition was accepted
q1(q{CREATE FUNCTION corpus_check(b bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
BEGIN
	PERFORM allma_create_flow(convert_from(b, 'UTF8')::jsonb, false);
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
	IF length(msg) > 1000 THEN
		RETURN st || chr(9) || 'a message of ' || length(msg) || ' characters';
	END IF;
	RETURN st || chr(9) || replace(replace(replace(left(msg, 200), chr(92), chr(92) || chr(92)),
		chr(10), chr(92) || 'n'), chr(9), chr(92) || 't');
END $$});

opendir(my $dh, $dir) or die "no corpus at $dir: $!";
my @files = sort grep { /\.json$/ } readdir($dh);
closedir($dh);
cmp_ok(scalar(@files), '>=', 300, 'the corpus has at least 300 definitions');

my %pinned;
unless ($record)
{
	open(my $mf, '<', $manifest) or die "no manifest $manifest: $!";
	while (my $line = <$mf>)
	{
		chomp $line;
		next if $line =~ /^#/ || $line eq '';
		my ($file, $rest) = split(/\t/, $line, 2);
		$pinned{$file} = $rest;
	}
	close($mf);
}

my %got;
my $pid = q1('SELECT pg_postmaster_start_time()');
my @batch;
my $flush = sub {
	return unless @batch;
	my $values = join(",\n", map { "('$_->[0]', '\\x$_->[1]'::bytea)" } @batch);
	my $res = q1("SELECT f || E'\\t' || corpus_check(b) FROM (VALUES $values) v(f, b) ORDER BY f");
	for my $line (split /\n/, $res)
	{
		my ($file, $rest) = split(/\t/, $line, 2);
		$got{$file} = $rest;
	}
	@batch = ();
};
for my $file (@files)
{
	open(my $fh, '<:raw', "$dir/$file") or die "$file: $!";
	local $/;
	my $bytes = <$fh>;
	close($fh);
	push @batch, [ $file, unpack('H*', $bytes) ];
	$flush->() if @batch >= 20 || length($bytes) > 100000;
}
$flush->();

is(scalar(keys %got), scalar(@files), 'every definition was checked');
my @accepted = grep { $got{$_} eq 'ok' } @files;
is_deeply(\@accepted, [], 'no definition is accepted');
my @internal = grep { $got{$_} =~ /^XX/ } @files;
is_deeply(\@internal, [], 'no definition causes an internal error');
my @long = grep { $got{$_} =~ /\ta message of \d+ characters$/ } @files;
is_deeply(\@long, [], 'no error message is longer than 1,000 characters (values quoted in them are clipped)');
is(q1('SELECT count(*) FROM allma.flows'), '0', 'none was stored');
is(q1('SELECT pg_postmaster_start_time()'), $pid, 'the server stayed up (no restart)');
unlike(slurp_file($node->logfile), qr/terminated by signal|server process .* was terminated/,
	'no backend crashed');

if ($record)
{
	open(my $mf, '>', $record) or die "$record: $!";
	print $mf "# file\tSQLSTATE\tmessage (first 200 characters): written by t/066_bad_definitions.pl (ALLMA_CORPUS_RECORD)\n";
	print $mf "$_\t$got{$_}\n" for @files;
	close($mf);
	pass("manifest recorded in $record");
}
else
{
	my @missing = grep { !exists $pinned{$_} } @files;
	is_deeply(\@missing, [], 'every definition has a pinned error');
	my @stale = grep { !-e "$dir/$_" } sort keys %pinned;
	is_deeply(\@stale, [], 'every pinned error has its definition');
	my @differ = grep { exists $pinned{$_} && $pinned{$_} ne $got{$_} } @files;
	for my $f (@differ)
	{
		diag("$f:\n  pinned: $pinned{$f}\n  got:    $got{$f}");
	}
	is(scalar(@differ), 0, 'every definition fails with its pinned SQLSTATE and message');
}

done_testing();
