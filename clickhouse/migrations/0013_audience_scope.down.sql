DROP TABLE IF EXISTS ${db}.audience_scope;
