DROP TABLE IF EXISTS ${db}.regulations;
DROP TABLE IF EXISTS ${db}.deleted_ids;
