-- Yahoo serves intraday prices adjusted for every split up to the day of the request. Bars stored
-- before a split's ex-date are restated once the split is known (corporate_actions, from any run's
-- answer): prices divided by the ratio, volume multiplied, for the bars of earlier sessions fetched
-- before the ex-date; so every stored bar is adjusted as Yahoo would serve it now. One row per
-- split restated, so each is applied once.
CREATE TABLE IF NOT EXISTS intraday_split_restatements (
    ticker       text             NOT NULL,
    ex_date      date             NOT NULL,
    ratio        double precision NOT NULL,
    bars         integer          NOT NULL,
    restated_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (ticker, ex_date)
);
