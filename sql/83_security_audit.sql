-- Privileges audit: every privilege PUBLIC, allma_user and allma_admin hold
-- on the extension's schema, functions, tables, views, columns and
-- sequences, one line per object and grantee.  A branch that adds an
-- object adds its line here (and says why the grantee needs it).

WITH members AS (
	SELECT d.classid, d.objid
	  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = 'allma'
), objects AS (
	SELECT 'schema' AS kind, n.nspname::text AS name, coalesce(n.nspacl, acldefault('n', n.nspowner)) AS acl
	  FROM pg_namespace n WHERE n.nspname = 'allma'
	UNION ALL
	SELECT 'function', p.oid::regprocedure::text, coalesce(p.proacl, acldefault('f', p.proowner))
	  FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
	UNION ALL
	SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'S' THEN 'sequence' END,
		   c.oid::regclass::text,
		   coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))
	  FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
	UNION ALL
	SELECT 'column', a.attrelid::regclass::text || '.' || a.attname, a.attacl
	  FROM pg_attribute a JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = a.attrelid
	 WHERE a.attacl IS NOT NULL
)
SELECT o.kind, o.name, CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE r.rolname END AS grantee,
	   string_agg(x.privilege_type, ', ' ORDER BY x.privilege_type) AS privileges
  FROM objects o, aclexplode(o.acl) x
  LEFT JOIN pg_roles r ON r.oid = x.grantee
 WHERE x.grantee = 0 OR r.rolname IN ('allma_user', 'allma_admin')
 GROUP BY 1, 2, 3
 ORDER BY 1, 2, 3;

-- privileges that nobody but superusers may hold on allma's relations
SELECT c.oid::regclass AS relation, r.rolname, x.privilege_type
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
	   aclexplode(c.relacl) x JOIN pg_roles r ON r.oid = x.grantee
 WHERE n.nspname = 'allma' AND x.grantee <> c.relowner
   AND x.privilege_type IN ('TRUNCATE', 'REFERENCES', 'TRIGGER');

-- SECURITY DEFINER functions pin search_path (ending in pg_temp); so do the
-- functions that switch to the bootstrap superuser inside (C functions of
-- the API).  The functions that do not pin it run entirely as their caller.
SELECT p.oid::regprocedure AS function, p.prosecdef
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'allma'
 WHERE NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
 ORDER BY p.oid::regprocedure::text;
