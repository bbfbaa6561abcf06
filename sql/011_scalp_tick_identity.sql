-- A tick is stored once, whichever files carry it: tick_key identifies its content (symbol, times,
-- prices, sizes, volume, session, flags; computed by the loader), unique. A line whose tick is
-- already stored (a copied or renamed file, overlapping rotations) is kept as a copy: its file and
-- line and the key. When the file that brought a tick is rewritten or removed from the tables, a
-- copy takes its place, so no tick another file still carries is lost. Ticks loaded before this
-- migration have no key and are not matched.
ALTER TABLE scalp_ticks ADD COLUMN IF NOT EXISTS tick_key uuid;
CREATE UNIQUE INDEX IF NOT EXISTS scalp_ticks_tick_key ON scalp_ticks (tick_key);

CREATE TABLE IF NOT EXISTS scalp_tick_copies (
    source_file  text    NOT NULL,
    source_line  integer NOT NULL,
    tick_key     uuid    NOT NULL,
    PRIMARY KEY (source_file, source_line)
);
CREATE INDEX IF NOT EXISTS scalp_tick_copies_key ON scalp_tick_copies (tick_key);
