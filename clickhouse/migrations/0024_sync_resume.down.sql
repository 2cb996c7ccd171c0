ALTER TABLE ${db}.destination_cursors DROP COLUMN IF EXISTS sync_after;
ALTER TABLE ${db}.destination_cursors DROP COLUMN IF EXISTS sync_computation;
ALTER TABLE ${db}.destination_cursors DROP COLUMN IF EXISTS sync_head;
