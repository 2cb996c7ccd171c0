-- Analyst-facing views (docs/schema.md). Every one is correct right after an insert: they read
-- the ReplacingMergeTree tables with FINAL or argMax(..., version), never the raw rows.

-- The current profile of each id that the identity workers have decided on.
CREATE OR REPLACE VIEW ${db}.id_mapping_current AS
SELECT id, profile_id, version, conflicts, updated_at
FROM ${db}.id_mapping FINAL;

-- The current state row of each id.
CREATE OR REPLACE VIEW ${db}.id_state_current AS
SELECT id, traits, trait_times, group_id, group_time, audiences, version, updated_at
FROM ${db}.id_state FINAL;

-- Events, one row per messageId, with the profile they belong to now: the current mapping of
-- their person_key, or the person_key itself when no worker has mapped it (yet).
CREATE OR REPLACE VIEW ${db}.events_resolved AS
SELECT
    coalesce(nullIf(m.profile_id, ''), e.person_key) AS profile_id,
    e.*,
    e.properties_json AS properties_json,
    e.traits_json AS traits_json,
    e.context_json AS context_json
FROM ${db}.events AS e FINAL
LEFT JOIN ${db}.id_mapping_current AS m ON m.id = e.person_key;

-- Every id Feedhouse knows of (seen in events or decided by the identity workers) with the
-- profile it resolves to now.
CREATE OR REPLACE VIEW ${db}.profile_ids AS
SELECT all_ids.id AS id, coalesce(nullIf(m.profile_id, ''), all_ids.id) AS profile_id
FROM
(
    SELECT DISTINCT person_key AS id FROM ${db}.events WHERE person_key != ''
    UNION DISTINCT
    SELECT id FROM ${db}.id_mapping
    UNION DISTINCT
    SELECT id FROM ${db}.id_state
) AS all_ids
LEFT JOIN ${db}.id_mapping_current AS m ON m.id = all_ids.id;

-- Engage audience membership per profile: across the profile's ids, the audience entry with
-- the newest event time wins.
CREATE OR REPLACE VIEW ${db}.audience_membership AS
SELECT
    profile_id,
    audience,
    newest.1 = 1 AS member,
    newest.2 AS entered_at,
    newest.3 AS exited_at,
    newest.4 AS time
FROM
(
    SELECT
        p.profile_id AS profile_id,
        a.audience AS audience,
        -- One argMax over a tuple: argMax alone skips NULL values, which would mix an older
        -- entry's exitedAt into the newest entry.
        argMax(tuple(a.member, a.entered_at, a.exited_at, a.time), (a.time_key, a.id)) AS newest
    FROM
    (
        SELECT
            s.id AS id,
            kv.1 AS audience,
            JSONExtractBool(kv.2, 'member') AS member,
            JSONExtract(kv.2, 'time', 'Nullable(Int64)') AS time_micros,
            coalesce(time_micros, 0) AS time_key,
            fromUnixTimestamp64Micro(time_micros, 'UTC') AS time,
            fromUnixTimestamp64Micro(JSONExtract(kv.2, 'enteredAt', 'Nullable(Int64)'), 'UTC') AS entered_at,
            fromUnixTimestamp64Micro(JSONExtract(kv.2, 'exitedAt', 'Nullable(Int64)'), 'UTC') AS exited_at
        FROM ${db}.id_state_current AS s
        ARRAY JOIN JSONExtractKeysAndValuesRaw(s.audiences) AS kv
    ) AS a
    INNER JOIN ${db}.profile_ids AS p ON p.id = a.id
    GROUP BY profile_id, audience
);

-- One row per profile: its ids, traits merged across its ids (for each trait the value with the
-- newest event time wins), its group (latest group call), activity, current audiences.
CREATE OR REPLACE VIEW ${db}.profiles AS
WITH
    traits AS
    (
        SELECT profile_id, concat('{', arrayStringConcat(groupArray(concat(toJSONString(key), ':', raw)), ','), '}') AS traits
        FROM
        (
            SELECT p.profile_id AS profile_id, t.key AS key, argMax(t.raw, (t.time, t.id)) AS raw
            FROM
            (
                SELECT s.id AS id, kv.1 AS key, kv.2 AS raw, JSONExtract(s.trait_times, kv.1, 'Int64') AS time
                FROM ${db}.id_state_current AS s
                ARRAY JOIN JSONExtractKeysAndValuesRaw(s.traits) AS kv
            ) AS t
            INNER JOIN ${db}.profile_ids AS p ON p.id = t.id
            GROUP BY profile_id, key
        )
        GROUP BY profile_id
    ),
    groups AS
    (
        SELECT p.profile_id AS profile_id, argMax(s.group_id, (coalesce(s.group_time, toDateTime64(0, 6, 'UTC')), s.id)) AS group_id
        FROM ${db}.id_state_current AS s
        INNER JOIN ${db}.profile_ids AS p ON p.id = s.id
        WHERE s.group_id != ''
        GROUP BY profile_id
    ),
    activity AS
    (
        SELECT p.profile_id AS profile_id, min(e.timestamp) AS first_seen, max(e.timestamp) AS last_seen, count() AS event_count
        FROM ${db}.events AS e FINAL
        INNER JOIN ${db}.profile_ids AS p ON p.id = e.person_key
        GROUP BY profile_id
    ),
    audiences AS
    (
        SELECT profile_id, groupArray(audience) AS audiences
        FROM ${db}.audience_membership
        WHERE member
        GROUP BY profile_id
    )
SELECT
    ids.profile_id AS profile_id,
    ids.ids AS ids,
    coalesce(nullIf(traits.traits, ''), '{}') AS traits,
    coalesce(groups.group_id, '') AS group_id,
    -- Profiles without events get NULL, whatever join_use_nulls says.
    if(activity.profile_id = '', NULL, activity.first_seen) AS first_seen,
    if(activity.profile_id = '', NULL, activity.last_seen) AS last_seen,
    coalesce(activity.event_count, 0) AS event_count,
    audiences.audiences AS audiences
FROM (SELECT profile_id, arraySort(groupArray(id)) AS ids FROM ${db}.profile_ids GROUP BY profile_id) AS ids
LEFT JOIN traits ON traits.profile_id = ids.profile_id
LEFT JOIN groups ON groups.profile_id = ids.profile_id
LEFT JOIN activity ON activity.profile_id = ids.profile_id
LEFT JOIN audiences ON audiences.profile_id = ids.profile_id;

-- Groups: current traits and the number of profiles whose latest group call named them.
CREATE OR REPLACE VIEW ${db}.groups AS
SELECT
    all_groups.group_id AS group_id,
    coalesce(nullIf(g.traits, ''), '{}') AS traits,
    coalesce(nullIf(g.trait_times, ''), '{}') AS trait_times,
    if(g.group_id = '', NULL, g.updated_at) AS updated_at,
    coalesce(members.member_count, 0) AS member_count
FROM
(
    SELECT group_id FROM ${db}.group_state
    UNION DISTINCT
    SELECT group_id FROM ${db}.id_state_current WHERE group_id != ''
) AS all_groups
LEFT JOIN (SELECT group_id, traits, trait_times, updated_at FROM ${db}.group_state FINAL) AS g ON g.group_id = all_groups.group_id
LEFT JOIN
(
    SELECT group_id, count() AS member_count FROM ${db}.profiles WHERE group_id != '' GROUP BY group_id
) AS members ON members.group_id = all_groups.group_id;
