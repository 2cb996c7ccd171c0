DROP TABLE IF EXISTS ${db}.rejected_events;
