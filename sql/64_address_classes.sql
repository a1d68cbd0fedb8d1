-- Address classes of the HTTP allow-list (issue 13 #6): NAT64 local-use
-- (64:ff9b:1::/48, RFC 8215), Teredo (2001::/32, RFC 4380), documentation
-- (2001:db8::/32) and discard-only (100::/64) IPv6 addresses are not
-- public: refused before any connection unless the allow-list names them.
-- A well-known-prefix NAT64 address (64:ff9b::/96) is as public as the
-- IPv4 address it embeds (here private ones: refused).  No test here
-- connects anywhere: every request is refused before connecting.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

SELECT u, r->'error'->>'message' AS message, r->'error'->'refused' AS refused
  FROM unnest(ARRAY[
	'http://[64:ff9b:1::1]/',
	'http://[64:ff9b:1:ffff:ffff:ffff:ffff:ffff]/',
	'http://[64:ff9b:1::808:808]/',
	'http://[2001::1]/',
	'http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/',
	'http://[2001:0:ffff:ffff:ffff:ffff:ffff:ffff]/',
	'http://[2001:db8::1]/',
	'http://[100::1]/',
	'http://[64:ff9b::a00:1]/',
	'http://[64:ff9b::7f00:1]/'
  ]) AS u,
  LATERAL allma_http_request('GET', u) AS r;
