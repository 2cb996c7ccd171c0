DROP VIEW IF EXISTS ${db}.computed_by_profile_mv;
DROP TABLE IF EXISTS ${db}.computed_by_profile;
DROP VIEW IF EXISTS ${db}.computed_current_mv;
DROP TABLE IF EXISTS ${db}.computed_current;
DROP TABLE IF EXISTS ${db}.computed_changes;
