-- Give every card of a BENCHMARK database a past: its card transactions move
-- 3 days back (the last hour's velocity window starts empty, as for cards used
-- on earlier days), then each approved purchase is copied 20 times, 4, 8, ...
-- 80 days earlier (new ids and network ids, status
-- 'cleared', with its transactions row), so the cards hold some 300 approved
-- purchases over 80 days, like cards in daily use. Run it on a database that
-- `veix bench authorize` has already driven traffic at, before `veix migrate`
-- to 0006 (whose backfill then fills card_risk_days and card_merchants), or
-- rerun migration 0006's backfill by hand. No ledger entries are written for
-- the copies: never run this on a database whose money matters.
--
--   psql -d veix_perf -v ON_ERROR_STOP=1 -f tests/performance/synthetic_history.sql
BEGIN;
UPDATE card_transactions SET created_at = created_at - interval '3 days', updated_at = updated_at - interval '3 days';
CREATE TEMP TABLE gen AS
  SELECT ct.id AS src_id, ct.transaction_id AS src_tx, k, gen_random_uuid() AS nid, gen_random_uuid() AS ntx
  FROM card_transactions ct, generate_series(1, 20) k
  WHERE ct.response_code = '00' AND ct.kind = 'purchase';
CREATE TEMP TABLE tx AS SELECT t.*, g.ntx AS g_id, g.k AS g_k FROM transactions t JOIN gen g ON g.src_tx = t.id;
UPDATE tx SET id = g_id, created_at = created_at - g_k * interval '4 days',
  updated_at = updated_at - g_k * interval '4 days';
ALTER TABLE tx DROP COLUMN g_id, DROP COLUMN g_k;
INSERT INTO transactions SELECT * FROM tx;
CREATE TEMP TABLE ctx AS
  SELECT c.*, g.nid AS g_id, g.ntx AS g_tx, g.k AS g_k FROM card_transactions c JOIN gen g ON g.src_id = c.id;
UPDATE ctx SET id = g_id, transaction_id = g_tx, network_id = network_id || '-h' || g_k, status = 'cleared',
  created_at = created_at - g_k * interval '4 days', updated_at = updated_at - g_k * interval '4 days',
  hold_expires_at = hold_expires_at - g_k * interval '4 days';
ALTER TABLE ctx DROP COLUMN g_id, DROP COLUMN g_tx, DROP COLUMN g_k;
INSERT INTO card_transactions SELECT * FROM ctx;
COMMIT;
VACUUM ANALYZE;
