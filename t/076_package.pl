# The Debian package: dpkg-buildpackage -us -uc -b builds
# postgresql-15-allma from a copy of the source tree (never in the tree
# itself); the package holds the library, the control file and every SQL
# script, depends on PostgreSQL 15 and libcurl, and apt accepts it.  Then
# it is installed into a private copy of PostgreSQL (scripts/dev-pgroot.sh)
# by extracting it (dpkg-deb -x), so that the system's PostgreSQL, which
# other checkouts use, is never touched and no root is needed; a fresh
# cluster run from that copy creates the extension, runs a flow, and updates
# an installation of 1.0 to the current version.
#
# Skipped, with the reason, only where dpkg-buildpackage cannot run (no
# Debian build tools: scripts/install-deps.sh installs them).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Cwd ();
use File::Temp ();
use IPC::Run;
use JSON::PP;
use lib 't';
use AllmaTest;

sub in_path
{
	my ($tool) = @_;
	return grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}
my @missing = grep { !in_path($_) } qw(dpkg-buildpackage dpkg-deb dh pg_buildext);
push @missing, '/usr/lib/postgresql/15/bin/pg_config' unless -x '/usr/lib/postgresql/15/bin/pg_config';
plan skip_all => "dpkg-buildpackage cannot run here (missing: @missing); scripts/install-deps.sh installs the Debian build tools"
  if @missing;

my $src = Cwd::abs_path($ENV{ALLMA_SRC} // '..');
die "ALLMA_SRC ($src) is not allma's source tree" unless -f "$src/allma.control" && -d "$src/debian";

# run_cmd(cmd...): exit code, stdout and stderr, bounded to 20 minutes
sub run_cmd
{
	my @cmd = @_;
	my ($stdout, $stderr) = ('', '');
	my $ok = IPC::Run::run(\@cmd, '<', \undef, '>', \$stdout, '2>', \$stderr,
		IPC::Run::timeout(1200));
	return ($ok ? 0 : ($? >> 8 || 1), $stdout, $stderr);
}

#
# Versions agree: allma.control, META.json, debian/changelog
#
my ($default_version) = slurp_file("$src/allma.control") =~ /^default_version\s*=\s*'([^']+)'/m;
my $meta = JSON::PP->new->decode(slurp_file("$src/META.json"));
my ($deb_version) = slurp_file("$src/debian/changelog") =~ /^allma \(([^)]+)\)/;
like($meta->{version}, qr/^\Q$default_version\E\.\d+$/, "META.json's version ($meta->{version}) is the extension's ($default_version)");
is($meta->{provides}{allma}{version}, $meta->{version}, 'META.json provides allma at its version');
is($deb_version, $meta->{version}, 'debian/changelog has the same version');

#
# Build from a copy of the tree, without what a build or a test left in it
#
# a directory of its own (the build and the PostgreSQL copy take a few
# hundred MB), removed when the test ends
my $tmp = File::Temp::tempdir('allma-package.XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
my $copy = "$tmp/allma-$deb_version";
mkdir $copy or die "$copy: $!";
my ($rc, $out, $err) = run_cmd('sh', '-c',
	'tar -C "$1" --exclude=./.git --exclude="*.o" --exclude="*.so" --exclude="*.bc" '
	  . '--exclude=./results --exclude="./tmp_check*" --exclude=./output_iso --exclude=./log '
	  . '--exclude=./regression.diffs --exclude=./regression.out --exclude=./.demo '
	  . '--exclude=./bench/out --exclude="./build-*" --exclude=./debian/.debhelper '
	  . '--exclude="./debian/postgresql-*-allma" --exclude=./debian/files '
	  . '-cf - . | tar -C "$2" -xf -', 'copy', $src, $copy);
is($rc, 0, 'the source tree is copied') or diag($err);

($rc, $out, $err) = run_cmd('sh', '-c', 'cd "$1" && dpkg-buildpackage -us -uc -b', 'build', $copy);
is($rc, 0, 'dpkg-buildpackage -us -uc -b builds the package')
  or diag(substr("$out\n$err", -4000));
my ($deb) = glob("$tmp/postgresql-15-allma_${deb_version}_*.deb");
ok(defined $deb && -f $deb, 'postgresql-15-allma is built') or BAIL_OUT('no package');

#
# What the package holds and needs
#
($rc, $out) = run_cmd('dpkg-deb', '-c', $deb);
my %files = map { (split /\s+/, $_, 6)[5] => 1 } split /\n/, $out;
ok($files{'./usr/lib/postgresql/15/lib/allma.so'}, 'the package holds allma.so');
ok($files{'./usr/share/postgresql/15/extension/allma.control'}, 'the package holds allma.control');
for my $script (map { s{.*/}{}r } glob("$src/allma--*.sql"))
{
	ok($files{"./usr/share/postgresql/15/extension/$script"}, "the package holds $script");
}
ok($files{'./usr/share/doc/postgresql-15-allma/copyright'}, 'the package holds its copyright file');

($rc, $out) = run_cmd('dpkg-deb', '-f', $deb, 'Package', 'Version', 'Architecture', 'Depends');
like($out, qr/^Package: postgresql-15-allma$/m, 'the package is postgresql-15-allma');
like($out, qr/^Version: \Q$deb_version\E$/m, "its version is $deb_version");
like($out, qr/^Depends: .*\bpostgresql-15\b/m, 'it depends on postgresql-15');
like($out, qr/^Depends: .*\blibcurl4\b/m, 'it depends on libcurl');

# apt resolves its dependencies (a simulation: no root, nothing installed)
($rc, $out, $err) = run_cmd('apt-get', '-s', '-o', 'Debug::NoLocking=1', 'install', $deb);
is($rc, 0, 'apt-get accepts the package') or diag("$out\n$err");
like($out, qr/^Inst postgresql-15-allma /m, 'apt-get would install it');

#
# Installed into a private copy of PostgreSQL 15: a fresh cluster runs a flow
#
my $root = "$tmp/pgroot";
($rc, $out, $err) = run_cmd("$src/scripts/dev-pgroot.sh", $root);
is($rc, 0, 'a private copy of PostgreSQL 15 is made') or diag($err);
my $install = "$root/usr/lib/postgresql/15";
# nothing of allma but what the package brings
unlink glob("$install/lib/allma.so $root/usr/share/postgresql/15/extension/allma*");
($rc, $out, $err) = run_cmd('dpkg-deb', '-x', $deb, $root);
is($rc, 0, 'the package is extracted into it') or diag($err);
ok(-f "$install/lib/allma.so", 'allma.so is in the private copy');

my $node = PostgreSQL::Test::Cluster->new('packaged', install_path => $install);
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'allma'
allma.database_name = 'postgres'
allma.max_workers = 2
max_worker_processes = 16
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION allma');
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'allma'}),
	$default_version, "CREATE EXTENSION allma installs $default_version");
wait_for_workers($node, 2);
$node->safe_psql('postgres', "SELECT allma_create_flow('" . linear_flow('packaged', 3) . "')");
my $status = $node->safe_psql('postgres',
	"SELECT allma_start_flow('packaged') AS e \\gset\nSELECT allma_wait(:'e', '120 s')");
is($status, 'COMPLETED', 'a flow runs on the packaged extension');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM allma.step_executions s JOIN allma.executions e USING (execution_id)
		   WHERE e.flow_id = 'packaged' AND s.status = 'COMPLETED'}),
	'3', 'its three steps are recorded');

# the library the server loaded is the packaged one
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'allma worker' LIMIT 1});
my $maps = -r "/proc/$pid/maps" ? slurp_file("/proc/$pid/maps") : '';
SKIP:
{
	skip 'no /proc maps to read', 1 unless $maps;
	like($maps, qr/\Q$install\E\/lib\/allma\.so/, 'the workers run the packaged allma.so');
}

# an installation of 1.0 updates to the current version with the packaged scripts
$node->safe_psql('postgres', 'CREATE DATABASE upgraded');
$node->safe_psql('upgraded', q{CREATE EXTENSION allma VERSION '1.0'});
$node->safe_psql('upgraded', 'ALTER EXTENSION allma UPDATE');
is($node->safe_psql('upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'allma'}),
	$default_version, "ALTER EXTENSION allma UPDATE reaches $default_version");

$node->stop;
done_testing();
