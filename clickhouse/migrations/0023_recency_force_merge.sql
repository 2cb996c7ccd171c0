-- person_recency's parts are merged whole once they are five minutes old.
--
-- Until parts merge, the table holds a row for every insert that touched a person: the people
-- list skips the superseded rows one by one (read/queries/people.py), and deep in the list most
-- rows are superseded (people seen again later). ClickHouse's size-tiered merge choice can leave
-- a table of many parts for hours after a bulk load: at 10M events, 9 parts held 3.4M rows for
-- 1.6M people, and a page at a random depth took 68 ms p50 / 308 ms p95 to find its 50 people
-- against 15 / 21 once merged (docs/benchmarks.md). The table is small (one row per person), so
-- rewriting it every few minutes is cheap beside the events tables' merges.
ALTER TABLE ${db}.person_recency MODIFY SETTING min_age_to_force_merge_seconds = 300;
