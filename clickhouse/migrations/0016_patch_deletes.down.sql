-- Back to mutation-based lightweight deletes (patch parts already written stay applied).
ALTER TABLE ${db}.events MODIFY SETTING enable_block_number_column = 0, enable_block_offset_column = 0;
ALTER TABLE ${db}.events_by_person_time MODIFY SETTING enable_block_number_column = 0, enable_block_offset_column = 0;
ALTER TABLE ${db}.events_by_time MODIFY SETTING enable_block_number_column = 0, enable_block_offset_column = 0;
ALTER TABLE ${db}.rejected_events MODIFY SETTING enable_block_number_column = 0, enable_block_offset_column = 0;
ALTER TABLE ${db}.id_mapping MODIFY SETTING enable_block_number_column = 0, enable_block_offset_column = 0;
ALTER TABLE ${db}.id_mapping_by_profile MODIFY SETTING enable_block_number_column = 0, enable_block_offset_column = 0;
ALTER TABLE ${db}.id_state MODIFY SETTING enable_block_number_column = 0, enable_block_offset_column = 0;
ALTER TABLE ${db}.id_state_by_group MODIFY SETTING enable_block_number_column = 0, enable_block_offset_column = 0;
ALTER TABLE ${db}.id_state_by_trait MODIFY SETTING enable_block_number_column = 0, enable_block_offset_column = 0;
ALTER TABLE ${db}.id_state_by_audience MODIFY SETTING enable_block_number_column = 0, enable_block_offset_column = 0;
ALTER TABLE ${db}.computed_changes MODIFY SETTING enable_block_number_column = 0, enable_block_offset_column = 0;
ALTER TABLE ${db}.computed_current MODIFY SETTING enable_block_number_column = 0, enable_block_offset_column = 0;
ALTER TABLE ${db}.computed_by_profile MODIFY SETTING enable_block_number_column = 0, enable_block_offset_column = 0;
