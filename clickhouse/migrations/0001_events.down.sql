DROP TABLE IF EXISTS ${db}.events;
