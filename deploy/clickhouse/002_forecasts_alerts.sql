-- Latest live state and forecast per (sale, sku); `version` grows with every snapshot, so a replayed older
-- snapshot never overwrites a newer one.
CREATE TABLE IF NOT EXISTS forecasts
(
    sale_id               LowCardinality(String),
    sku                   String,
    version               UInt64,
    as_of                 DateTime64(3, 'UTC'),
    views                 UInt64,
    carts                 UInt64,
    orders                UInt64,
    units                 UInt64,
    revenue               Float64,
    velocity_uph          Float64,
    expert_prior          Nullable(Float64),
    prior_source          LowCardinality(Nullable(String)),
    p10                   Nullable(Float64),
    p50                   Nullable(Float64),
    p90                   Nullable(Float64),
    stock_available       Nullable(Int64),
    projected_stockout_at Nullable(DateTime64(3, 'UTC'))
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (sale_id, sku);

-- statement
-- Every snapshot, for forecast-vs-truth analysis after the sale; ages out.
CREATE TABLE IF NOT EXISTS forecasts_history
(
    sale_id               LowCardinality(String),
    sku                   String,
    version               UInt64,
    as_of                 DateTime64(3, 'UTC'),
    units                 UInt64,
    velocity_uph          Float64,
    expert_prior          Nullable(Float64),
    p10                   Nullable(Float64),
    p50                   Nullable(Float64),
    p90                   Nullable(Float64),
    inserted_at           DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(as_of)
ORDER BY (sale_id, sku, version)
TTL inserted_at + INTERVAL 180 DAY;

-- statement
-- The alert log, resolutions included; alert_id is stable, so a redelivered alert is one row.
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id              String,
    sale_id               LowCardinality(String),
    sku                   String,
    status                LowCardinality(String),
    severity              LowCardinality(String),
    probability           Float64,
    shortfall             Float64,
    available             Int64,
    p90                   Float64,
    recommended_quantity  Int64,
    projected_stockout_at Nullable(DateTime64(3, 'UTC')),
    reason                String,
    raised_at             DateTime64(3, 'UTC'),
    inserted_at           DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(raised_at)
PARTITION BY toYYYYMM(raised_at)
ORDER BY (sale_id, sku, alert_id)
TTL inserted_at + INTERVAL 400 DAY;
