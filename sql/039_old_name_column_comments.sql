-- The views of the old names (035, 036) list their columns in a catalog browser too: each column says
-- what its table's column says, and a renamed one which column it now is ("As event_at: ...").
-- Read from each view's definition, so no list is written twice.
DO $$
DECLARE
    view_oid oid;
    base     oid;
    item     text;
    source   text;
    alias    text;
    said     text;
BEGIN
    FOR view_oid IN
        SELECT c.oid FROM pg_class c
        WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'v' AND obj_description(c.oid, 'pg_class') LIKE 'Deprecated%'
    LOOP
        SELECT DISTINCT d.refobjid INTO base FROM pg_rewrite r
        JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
        WHERE r.ev_class = view_oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> view_oid;
        FOR item IN
            SELECT btrim(x, E' \n') FROM regexp_split_to_table(substring(pg_get_viewdef(view_oid) FROM '^\s*SELECT(.*)\sFROM\s'), ',') AS x
        LOOP
            source := regexp_replace(split_part(item, ' AS ', 1), '^.*\.', '');
            alias := btrim(CASE WHEN item LIKE '% AS %' THEN split_part(item, ' AS ', 2) ELSE source END, '"');
            source := btrim(source, '"');
            SELECT col_description(base, a.attnum) INTO said FROM pg_attribute a WHERE a.attrelid = base AND a.attname = source;
            EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', view_oid::regclass, alias,
                           CASE WHEN source = alias THEN said ELSE 'As ' || source || ': ' || coalesce(said, '') END);
        END LOOP;
    END LOOP;
END $$;
