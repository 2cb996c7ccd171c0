DROP VIEW IF EXISTS ${db}.profile_members_kv_mv;
DROP TABLE IF EXISTS ${db}.profile_members_kv;
DROP TABLE IF EXISTS ${db}.profile_members;
