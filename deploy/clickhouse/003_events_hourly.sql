-- Funnel per sale and hour, with conversion, over the deduplicated facts.
CREATE VIEW IF NOT EXISTS events_hourly AS
SELECT
    sale_id,
    toStartOfHour(ts) AS hour,
    countIf(kind = 'view')                      AS views,
    countIf(kind = 'cart')                      AS carts,
    uniqExactIf(event_id, kind = 'order')       AS orders,
    sumIf(units, kind = 'order')                AS units,
    sumIf(revenue, kind = 'order')              AS revenue,
    if(views = 0, 0, carts / views)             AS cart_rate,
    if(carts = 0, 0, orders / carts)            AS order_rate
FROM velocity_facts FINAL
GROUP BY sale_id, hour;
