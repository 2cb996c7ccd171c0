DROP VIEW IF EXISTS ${db}.person_recency_mv;
DROP TABLE IF EXISTS ${db}.person_recency;
