-- The stocking plan per (sale, sku) from stock.plans (issue 15): the latest version wins, so a replayed older plan
-- never overwrites a newer one. Warehouses: parallel arrays (region, units), empty when regions are unknown.
CREATE TABLE IF NOT EXISTS plans
(
    sale_id               LowCardinality(String),
    sku                   String,
    version               UInt64,
    quantity              Int64,
    service_level         Float64,
    p10                   Float64,
    p50                   Float64,
    p90                   Float64,
    expert                Nullable(Float64),
    correction            Float64,
    source                LowCardinality(String),
    reason                String,
    buyer_id              LowCardinality(Nullable(String)),
    warehouse_regions     Array(String),
    warehouse_quantities  Array(Int64),
    planned_at            DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (sale_id, sku);
