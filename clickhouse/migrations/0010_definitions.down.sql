DROP TABLE IF EXISTS ${db}.evaluator_state;
DROP TABLE IF EXISTS ${db}.destination_cursors;
DROP TABLE IF EXISTS ${db}.destinations;
DROP TABLE IF EXISTS ${db}.computation_status;
DROP TABLE IF EXISTS ${db}.definitions;
