-- Give every card of a BENCHMARK database a busy last hour: each approved
-- purchase of the card transactions there (run a short `veix bench authorize`
-- first) is copied 100 times, 30 s, 60 s, ... 50 minutes earlier (new ids
-- and network ids, with its transactions row), so a card holds some 450
-- approved purchases in its last hour, as after an hour of the benchmark at
-- full speed or for a busy fleet card. The velocity aggregates
-- (card_risk_minutes, migration 0007) are then rebuilt from card_transactions.
-- No ledger entries are written for the copies: never run this on a database
-- whose money matters.
--
--   psql -d veix_perf -v ON_ERROR_STOP=1 -f tests/performance/synthetic_last_hour.sql
BEGIN;
CREATE TEMP TABLE gen AS
  SELECT ct.id AS src_id, ct.transaction_id AS src_tx, k, gen_random_uuid() AS nid, gen_random_uuid() AS ntx
  FROM card_transactions ct, generate_series(1, 100) k
  WHERE ct.response_code = '00' AND ct.kind = 'purchase';
CREATE TEMP TABLE tx AS SELECT t.*, g.ntx AS g_id, g.k AS g_k FROM transactions t JOIN gen g ON g.src_tx = t.id;
UPDATE tx SET id = g_id, created_at = created_at - g_k * interval '30 seconds',
  updated_at = updated_at - g_k * interval '30 seconds';
ALTER TABLE tx DROP COLUMN g_id, DROP COLUMN g_k;
INSERT INTO transactions SELECT * FROM tx;
CREATE TEMP TABLE ctx AS
  SELECT c.*, g.nid AS g_id, g.ntx AS g_tx, g.k AS g_k FROM card_transactions c JOIN gen g ON g.src_id = c.id;
UPDATE ctx SET id = g_id, transaction_id = g_tx, network_id = network_id || '-m' || g_k,
  created_at = created_at - g_k * interval '30 seconds', updated_at = updated_at - g_k * interval '30 seconds',
  hold_expires_at = hold_expires_at - g_k * interval '30 seconds';
ALTER TABLE ctx DROP COLUMN g_id, DROP COLUMN g_tx, DROP COLUMN g_k;
INSERT INTO card_transactions SELECT * FROM ctx;
DELETE FROM card_risk_minutes;
INSERT INTO card_risk_minutes (card_id, minute, count, amount)
SELECT t.card_id, date_trunc('minute', t.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
       count(*), sum(t.billing_amount - coalesce(i.total, 0))
FROM card_transactions t LEFT JOIN (SELECT parent_id, sum(billing_amount) AS total FROM card_transactions
                                    WHERE response_code = '00' AND kind = 'incremental' GROUP BY parent_id) i
  ON i.parent_id = t.id
WHERE t.response_code = '00' AND t.kind IN ('purchase', 'incremental')
  AND t.created_at >= date_trunc('minute', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '60 minutes'
GROUP BY 1, 2;
COMMIT;
VACUUM ANALYZE;
