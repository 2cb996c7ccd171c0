DROP VIEW IF EXISTS ${db}.events_by_time_mv;
DROP TABLE IF EXISTS ${db}.events_by_time;
