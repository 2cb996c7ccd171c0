DROP VIEW IF EXISTS ${db}.id_state_kv_mv;
DROP TABLE IF EXISTS ${db}.id_state_kv;
DROP VIEW IF EXISTS ${db}.id_mapping_kv_mv;
DROP TABLE IF EXISTS ${db}.id_mapping_kv;
