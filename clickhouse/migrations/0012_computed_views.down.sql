DROP VIEW IF EXISTS ${db}.all_audience_membership;
DROP VIEW IF EXISTS ${db}.computed_trait_values;
DROP VIEW IF EXISTS ${db}.computed_audience_history;
DROP VIEW IF EXISTS ${db}.computed_audience_membership;
DROP VIEW IF EXISTS ${db}.definitions_current;
