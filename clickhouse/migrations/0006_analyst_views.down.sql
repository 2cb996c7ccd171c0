DROP VIEW IF EXISTS ${db}.groups;
DROP VIEW IF EXISTS ${db}.profiles;
DROP VIEW IF EXISTS ${db}.audience_membership;
DROP VIEW IF EXISTS ${db}.profile_ids;
DROP VIEW IF EXISTS ${db}.events_resolved;
DROP VIEW IF EXISTS ${db}.id_state_current;
DROP VIEW IF EXISTS ${db}.id_mapping_current;
