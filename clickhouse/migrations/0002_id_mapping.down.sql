DROP VIEW IF EXISTS ${db}.id_mapping_by_profile_mv;
DROP TABLE IF EXISTS ${db}.id_mapping_by_profile;
DROP TABLE IF EXISTS ${db}.id_mapping;
