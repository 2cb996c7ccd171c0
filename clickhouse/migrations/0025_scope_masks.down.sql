ALTER TABLE ${db}.audience_scope DROP COLUMN IF EXISTS mask;
