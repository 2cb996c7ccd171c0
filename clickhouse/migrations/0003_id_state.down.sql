DROP VIEW IF EXISTS ${db}.id_state_by_audience_mv;
DROP TABLE IF EXISTS ${db}.id_state_by_audience;
DROP VIEW IF EXISTS ${db}.id_state_by_trait_mv;
DROP TABLE IF EXISTS ${db}.id_state_by_trait;
DROP VIEW IF EXISTS ${db}.id_state_by_group_mv;
DROP TABLE IF EXISTS ${db}.id_state_by_group;
DROP TABLE IF EXISTS ${db}.id_state;
