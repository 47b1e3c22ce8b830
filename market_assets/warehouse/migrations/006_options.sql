-- Options: contract reference data, daily chain snapshots, open-interest history, our implied
-- volatilities and Greeks next to Alpaca's, and the flow aggregates analysts query.
-- Every fact table is keyed by the snapshot date (the daily partition: the NYSE session whose
-- close the quotes belong to) so a partition is replaced with one indexed DELETE + COPY.

CREATE TABLE IF NOT EXISTS market.option_contracts (
    symbol             text        PRIMARY KEY CHECK (symbol ~ '^[A-Z]{1,5}\d?\d{6}[CP]\d{8}$'),
    contract_id        text,
    underlying         text        NOT NULL,
    root               text        NOT NULL,
    name               text,
    expiration         date        NOT NULL,
    strike             double precision NOT NULL CHECK (strike > 0),
    type               text        NOT NULL CHECK (type IN ('call', 'put')),
    style              text        CHECK (style IN ('american', 'european')),
    size               bigint      CHECK (size > 0),
    status             text,
    tradable           boolean,
    open_interest      bigint      CHECK (open_interest >= 0),
    open_interest_date date,
    close_price        double precision CHECK (close_price >= 0),
    close_price_date   date,
    as_of              date        NOT NULL,
    first_seen         date        NOT NULL,
    run_id             text,
    ingested_at        timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS option_contracts_underlying_idx ON market.option_contracts (underlying, expiration);
COMMENT ON TABLE market.option_contracts IS
  'Option contract reference data from /v2/options/contracts, one row per OCC symbol, latest listing wins '
  '(as_of = snapshot session of the values; an older partition re-run never overwrites newer values). '
  'first_seen = earliest snapshot that listed the contract. size = shares per contract (usually 100).';

CREATE TABLE IF NOT EXISTS market.open_interest (
    symbol        text        NOT NULL,
    underlying    text        NOT NULL,
    as_of         date        NOT NULL,
    open_interest bigint      NOT NULL CHECK (open_interest >= 0),
    run_id        text,
    ingested_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, as_of)
);
CREATE INDEX IF NOT EXISTS open_interest_underlying_idx ON market.open_interest (underlying, as_of);
COMMENT ON TABLE market.open_interest IS
  'Open-interest history per contract; as_of is the date the figure belongs to as Alpaca states it '
  '(open_interest_date: OCC publishes OI once a day, usually for the previous session).';

CREATE TABLE IF NOT EXISTS market.option_chain (
    symbol             text        NOT NULL CHECK (symbol ~ '^[A-Z]{1,5}\d?\d{6}[CP]\d{8}$'),
    snapshot_date      date        NOT NULL,
    underlying         text        NOT NULL,
    root               text        NOT NULL,
    expiration         date        NOT NULL,
    strike             double precision NOT NULL CHECK (strike > 0),
    type               text        NOT NULL CHECK (type IN ('call', 'put')),
    bid                double precision CHECK (bid >= 0),
    ask                double precision CHECK (ask >= 0),
    bid_size           bigint,
    ask_size           bigint,
    bid_exchange       text,
    ask_exchange       text,
    last               double precision CHECK (last > 0),
    last_size          bigint,
    mark               double precision,
    quote_time         timestamptz,
    trade_time         timestamptz,
    volume             bigint      CHECK (volume >= 0),
    open_interest      bigint      CHECK (open_interest >= 0),
    open_interest_date date,
    crossed            boolean     NOT NULL,
    zero_bid           boolean     NOT NULL,
    alpaca_iv          double precision,
    alpaca_delta       double precision,
    alpaca_gamma       double precision,
    alpaca_theta       double precision,
    alpaca_vega        double precision,
    alpaca_rho         double precision,
    run_id             text,
    ingested_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, snapshot_date),
    CHECK (expiration >= snapshot_date),
    CHECK (mark IS NULL OR (NOT crossed AND bid > 0 AND mark BETWEEN bid AND ask))
);
CREATE INDEX IF NOT EXISTS option_chain_snapshot_idx ON market.option_chain (snapshot_date, underlying, expiration);
COMMENT ON TABLE market.option_chain IS
  'Daily option chain snapshots from /v1beta1/options/snapshots/{underlying}: one row per contract per '
  'snapshot_date (the NYSE session; the daily partition). Quotes as delivered. crossed = bid > ask, '
  'zero_bid = bid of 0: flagged, never dropped; mark = mid of a two-sided uncrossed quote, else NULL. '
  'volume = the day''s volume (dailyBar), NULL when not delivered; open_interest = latest figure from '
  'market.open_interest with as_of <= snapshot_date. alpaca_* = Alpaca''s own IV/Greeks, NULL when missing '
  '(theta per day, vega and rho per 1 point).';

CREATE TABLE IF NOT EXISTS market.option_greeks (
    symbol                 text        NOT NULL,
    snapshot_date          date        NOT NULL,
    underlying             text        NOT NULL,
    expiration             date        NOT NULL,
    strike                 double precision NOT NULL,
    type                   text        NOT NULL CHECK (type IN ('call', 'put')),
    underlying_price       double precision,
    price_used             double precision,
    price_source           text        CHECK (price_source IN ('mid', 'last')),
    time_to_expiry         double precision,
    rate                   double precision NOT NULL,
    dividend_yield         double precision NOT NULL,
    iv                     double precision,
    iv_reason              text,
    delta                  double precision,
    gamma                  double precision,
    theta                  double precision,
    vega                   double precision,
    rho                    double precision,
    model                  text        NOT NULL,
    early_exercise_flag    boolean,
    early_exercise_premium double precision,
    early_exercise_reason  text,
    alpaca_iv              double precision,
    alpaca_delta           double precision,
    alpaca_gamma           double precision,
    alpaca_theta           double precision,
    alpaca_vega            double precision,
    alpaca_rho             double precision,
    iv_diff                double precision,
    run_id                 text,
    ingested_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, snapshot_date),
    CHECK ((iv IS NULL) <> (iv_reason IS NULL))
);
CREATE INDEX IF NOT EXISTS option_greeks_snapshot_idx ON market.option_greeks (snapshot_date, underlying, expiration);
COMMENT ON TABLE market.option_greeks IS
  'Our implied volatility and BSM Greeks per contract and snapshot_date (model: European BSM with a '
  'continuous dividend yield; US equity options are American, early_exercise_flag marks contracts whose '
  'early-exercise premium makes that a poor fit). price_used = mid (price_source mid) or last trade when the '
  'quote is not two-sided; underlying_price = the session''s close from market.bars_daily; time_to_expiry '
  'in years of 365 days from quote_time to 16:00 New York on expiration; rate/dividend_yield from '
  'RISK_FREE_RATE/DIVIDEND_YIELDS. iv_reason says why iv is NULL (no_price, no_underlying_price, '
  'below_intrinsic, above_upper_bound, expired, ...). Greek units: theta per calendar day, vega and rho per '
  '1 point. alpaca_* are Alpaca''s values for comparison; iv_diff = iv - alpaca_iv.';

CREATE TABLE IF NOT EXISTS market.options_flow_daily (
    underlying             text        NOT NULL,
    snapshot_date          date        NOT NULL,
    underlying_price       double precision,
    contracts              integer     NOT NULL,
    call_volume            bigint,
    put_volume             bigint,
    total_volume           bigint,
    call_oi                bigint,
    put_oi                 bigint,
    total_oi               bigint,
    put_call_volume_ratio  double precision,
    put_call_oi_ratio      double precision,
    previous_snapshot_date date,
    previous_total_oi      bigint,
    oi_change              bigint,
    new_contracts          integer,
    front_expiration       date,
    front_max_pain         double precision,
    front_atm_iv           double precision,
    front_skew_25d         double precision,
    unusual_contracts      integer,
    run_id                 text,
    ingested_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (underlying, snapshot_date)
);
COMMENT ON TABLE market.options_flow_daily IS
  'Options flow per underlying and snapshot_date: call/put volume and open interest, put/call ratios by volume '
  'and by OI (NULL when the denominator is 0 or volume was not delivered; never infinite), OI change against '
  'the previous snapshot (over today''s contracts; new contracts count from 0), and the front expiry''s max '
  'pain, ATM IV and 25-delta skew (put IV - call IV) from our IVs.';

CREATE TABLE IF NOT EXISTS market.options_by_expiry (
    underlying        text        NOT NULL,
    snapshot_date     date        NOT NULL,
    expiration        date        NOT NULL,
    days_to_expiry    integer     NOT NULL,
    call_volume       bigint,
    put_volume        bigint,
    call_oi           bigint,
    put_oi            bigint,
    put_call_oi_ratio double precision,
    max_pain          double precision,
    atm_iv            double precision,
    put_iv_25d        double precision,
    call_iv_25d       double precision,
    skew_25d          double precision,
    run_id            text,
    ingested_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (underlying, snapshot_date, expiration)
);
COMMENT ON TABLE market.options_by_expiry IS
  'Per underlying, snapshot_date and expiration: volume and OI by side, max pain strike, ATM IV (interpolated '
  'at spot from OTM IVs) and 25-delta skew; the ATM IV term structure is atm_iv by days_to_expiry.';

CREATE TABLE IF NOT EXISTS market.options_by_strike (
    underlying    text        NOT NULL,
    snapshot_date date        NOT NULL,
    strike        double precision NOT NULL,
    call_volume   bigint,
    put_volume    bigint,
    call_oi       bigint,
    put_oi        bigint,
    run_id        text,
    ingested_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (underlying, snapshot_date, strike)
);
COMMENT ON TABLE market.options_by_strike IS
  'Per underlying, snapshot_date and strike (summed over expirations): call/put volume and open interest.';

CREATE TABLE IF NOT EXISTS market.options_unusual_activity (
    symbol        text        NOT NULL,
    snapshot_date date        NOT NULL,
    underlying    text        NOT NULL,
    expiration    date        NOT NULL,
    strike        double precision NOT NULL,
    type          text        NOT NULL,
    volume        bigint      NOT NULL,
    open_interest bigint,
    vol_oi_ratio  double precision,
    volume_z      double precision,
    run_id        text,
    ingested_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, snapshot_date)
);
COMMENT ON TABLE market.options_unusual_activity IS
  'Contracts with unusual volume on snapshot_date: volume >= 100 and volume/OI >= 2 (OI 0 counts as all new), '
  'and, with >= 5 earlier snapshots, a volume z-score >= 3 against the contract''s own trailing 20 snapshots.';

CREATE OR REPLACE VIEW market.v_latest_option_chain AS
SELECT c.symbol, c.underlying, c.expiration, c.strike, c.type, c.snapshot_date, c.bid, c.ask, c.mark, c.last,
       c.volume, c.open_interest, c.crossed, c.zero_bid, g.underlying_price, g.iv, g.delta, g.gamma, g.theta,
       g.vega, g.rho, g.early_exercise_flag, c.alpaca_iv, c.alpaca_delta
FROM market.option_chain c
JOIN (SELECT underlying, max(snapshot_date) AS snapshot_date FROM market.option_chain GROUP BY underlying) latest
  USING (underlying, snapshot_date)
LEFT JOIN market.option_greeks g USING (symbol, snapshot_date);
COMMENT ON VIEW market.v_latest_option_chain IS
  'Each underlying''s most recent chain snapshot with our IV and Greeks next to the quotes.';

CREATE OR REPLACE VIEW market.v_put_call_ratio AS
SELECT underlying, snapshot_date, put_call_volume_ratio, put_call_oi_ratio,
       avg(put_call_oi_ratio) OVER w AS put_call_oi_ratio_avg_20,
       avg(put_call_volume_ratio) OVER w AS put_call_volume_ratio_avg_20,
       total_volume, total_oi, oi_change
FROM market.options_flow_daily
WINDOW w AS (PARTITION BY underlying ORDER BY snapshot_date ROWS BETWEEN 19 PRECEDING AND CURRENT ROW);
COMMENT ON VIEW market.v_put_call_ratio IS
  'Daily put/call ratios per underlying with their trailing 20-snapshot averages.';

CREATE OR REPLACE VIEW market.v_iv_term_structure AS
SELECT underlying, snapshot_date, expiration, days_to_expiry, atm_iv, skew_25d, put_iv_25d, call_iv_25d
FROM market.options_by_expiry
WHERE atm_iv IS NOT NULL;
COMMENT ON VIEW market.v_iv_term_structure IS
  'ATM implied volatility and 25-delta skew by expiry: the term structure per underlying and snapshot_date.';
