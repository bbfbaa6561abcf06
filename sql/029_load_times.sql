-- A load time on every data table (what dbt's source freshness reads as loaded_at_field): the
-- daily tables have fetched_at, the events imported_at and valued_at, the rankings computed_at,
-- the ticks receive_time; the ten-minute bars had none.
ALTER TABLE swing_bars_10m ADD COLUMN IF NOT EXISTS loaded_at timestamptz NOT NULL DEFAULT now();
COMMENT ON COLUMN swing_bars_10m.loaded_at IS 'When the bar was last written (its load time).';
COMMENT ON COLUMN scalp_ticks.receive_time IS 'When the tick was loaded into this table (its load time; not when the observer received it).';
COMMENT ON COLUMN txn_events.imported_at IS 'When the event was imported (its load time); valued_at: when its metrics were last written.';
