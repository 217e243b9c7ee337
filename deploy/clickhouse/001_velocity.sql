-- Event-level facts, one row per (event, sku). Replays and retries insert the same rows again; the
-- ReplacingMergeTree key (sale_id, sku, ts, event_id) collapses them, and every reader uses FINAL, so totals stay
-- exact under at-least-once delivery. A Summing/Aggregating MV fed on insert could not promise that: it adds every
-- inserted copy before deduplication has a chance to run.
CREATE TABLE IF NOT EXISTS velocity_facts
(
    event_id    String,
    sale_id     LowCardinality(String),
    sku         String,
    kind        Enum8('view' = 1, 'cart' = 2, 'uncart' = 3, 'order' = 4),
    units       Int32,
    revenue     Float64,
    ts          DateTime64(3, 'UTC'),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (sale_id, sku, ts, event_id)
-- Age out by arrival, not event time: a replay of 2019 data must not expire on insert.
TTL toDateTime(inserted_at) + INTERVAL 400 DAY;

-- statement
-- Per sale, sku and minute: what operations look at. A view over the deduplicated facts.
CREATE VIEW IF NOT EXISTS velocity_minute AS
SELECT
    sale_id,
    sku,
    toStartOfMinute(ts) AS minute,
    countIf(kind = 'view')               AS views,
    countIf(kind = 'cart')               AS carts,
    countIf(kind = 'uncart')             AS uncarts,
    countIf(kind = 'order')              AS orders,
    sumIf(units, kind = 'order')         AS units,
    sumIf(revenue, kind = 'order')       AS revenue
FROM velocity_facts FINAL
GROUP BY sale_id, sku, minute;
