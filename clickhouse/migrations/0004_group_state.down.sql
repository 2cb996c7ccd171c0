DROP TABLE IF EXISTS ${db}.group_state;
