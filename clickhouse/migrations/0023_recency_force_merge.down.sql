-- ClickHouse's own merge choice again.
ALTER TABLE ${db}.person_recency RESET SETTING min_age_to_force_merge_seconds;
