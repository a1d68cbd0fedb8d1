# The manual covers what the extension installs: every allma_* function and
# every allma.* setting is named in README.md or a document under docs/, and
# every column of every table and view of schema allma is described in its
# section of docs/reference.md.  An object added without documentation fails
# here, naming it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $src = $ENV{ALLMA_SRC} // '..';
my $node = allma_node('documented', "allma.max_workers = 1\n");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# the manual: README.md and docs/*.md
my $manual = slurp_file("$src/README.md");
opendir(my $dh, "$src/docs") or die "no docs/ in $src: $!";
for my $f (sort grep { /\.md$/ } readdir $dh)
{
	$manual .= "\n" . slurp_file("$src/docs/$f");
}
closedir $dh;
my $reference = slurp_file("$src/docs/reference.md");

# functions: the name in backquotes, alone or with its arguments
my @functions = split /\n/, q1(q{
	SELECT DISTINCT p.proname FROM pg_proc p
	  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
	  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'allma'
	 ORDER BY 1});
cmp_ok(scalar(@functions), '>', 30, 'the extension has its functions');
my @undocumented = grep { $manual !~ /`\Q$_\E[`(]/ } @functions;
is(join(', ', @undocumented), '', 'every function is named in the manual');

# settings
my @settings = split /\n/, q1(q{SELECT name FROM pg_settings WHERE name LIKE 'allma.%' ORDER BY 1});
cmp_ok(scalar(@settings), '>', 15, 'the extension has its settings');
@undocumented = grep { $manual !~ /`\Q$_\E`/ } @settings;
is(join(', ', @undocumented), '', 'every setting is named in the manual');

# tables and views: a section "### allma.NAME" in docs/reference.md whose
# table names each column in backquotes (several per row allowed)
my %sections;
while ($reference =~ /^### allma\.(\w+)\n(.*?)(?=^### |\z)/msg)
{
	$sections{$1} = $2;
}
my @missing;
for my $row (split /\n/, q1(q{
	SELECT c.relname || '|' || a.attname
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	 WHERE n.nspname = 'allma' AND c.relkind IN ('r', 'v', 'p')
	 ORDER BY c.relname, a.attnum}))
{
	my ($rel, $col) = split /\|/, $row;
	if (!defined $sections{$rel})
	{
		push @missing, "allma.$rel (no section)" unless grep { $_ eq "allma.$rel (no section)" } @missing;
		next;
	}
	push @missing, "allma.$rel.$col" unless $sections{$rel} =~ /^\|[^\n]*`\Q$col\E`/m;
}
is(join(', ', @missing), '', 'every column of every table and view is described in docs/reference.md');

# and the reference describes nothing that is not there
my %relations = map { $_ => 1 } split /\n/, q1(q{
	SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = 'allma' AND c.relkind IN ('r', 'v', 'p')});
my @stale = grep { !$relations{$_} } sort keys %sections;
is(join(', ', @stale), '', 'docs/reference.md describes no table that does not exist');

$node->stop;
done_testing();
