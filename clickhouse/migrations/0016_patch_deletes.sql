-- Deletions as patch parts (privacy/executor.py, docs/privacy.md).
--
-- With block numbers and offsets on every row, a lightweight DELETE can be written as a small
-- patch part (lightweight_delete_mode = 'lightweight_update') that every read applies at once,
-- instead of a mutation that rewrites each part's row mask: a deletion is then invisible in the
-- time of one indexed read per table, however big the tables are. Parts written before this
-- migration get the two columns virtually; the purge materializes the patches (APPLY PATCHES)
-- before it removes the masked rows (APPLY DELETED MASK).
ALTER TABLE ${db}.events MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1;
ALTER TABLE ${db}.events_by_person_time MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1;
ALTER TABLE ${db}.events_by_time MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1;
ALTER TABLE ${db}.rejected_events MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1;
ALTER TABLE ${db}.id_mapping MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1;
ALTER TABLE ${db}.id_mapping_by_profile MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1;
ALTER TABLE ${db}.id_state MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1;
ALTER TABLE ${db}.id_state_by_group MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1;
ALTER TABLE ${db}.id_state_by_trait MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1;
ALTER TABLE ${db}.id_state_by_audience MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1;
ALTER TABLE ${db}.computed_changes MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1;
ALTER TABLE ${db}.computed_current MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1;
ALTER TABLE ${db}.computed_by_profile MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1;
