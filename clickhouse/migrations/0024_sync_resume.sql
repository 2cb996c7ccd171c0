-- A destination's initial sync resumes where it stopped (audiences/senders.py): the head it
-- snapshots up to, the computation it was sending and the last profile sent of it. 0 / '' when
-- no sync is under way.
ALTER TABLE ${db}.destination_cursors ADD COLUMN IF NOT EXISTS sync_head UInt64 DEFAULT 0;
ALTER TABLE ${db}.destination_cursors ADD COLUMN IF NOT EXISTS sync_computation String DEFAULT '';
ALTER TABLE ${db}.destination_cursors ADD COLUMN IF NOT EXISTS sync_after String DEFAULT '';
