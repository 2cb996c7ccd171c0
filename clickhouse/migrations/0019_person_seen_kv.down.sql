DROP VIEW IF EXISTS ${db}.person_seen_kv_mv;
DROP TABLE IF EXISTS ${db}.person_seen_kv;
