-- Every table has a key: price_changes logs each change of stored bars (a ticker may change many
-- times), so its rows get an identity of their own. A machinery table that retention keeps short:
-- adding the column rewrites it, which takes a moment.
ALTER TABLE price_changes ADD COLUMN IF NOT EXISTS change_id bigint GENERATED ALWAYS AS IDENTITY;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'price_changes'::regclass AND contype = 'p') THEN
        ALTER TABLE price_changes ADD CONSTRAINT price_changes_pkey PRIMARY KEY (change_id);
    END IF;
END
$$;
