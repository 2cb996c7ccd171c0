-- Analyst views of Feedhouse's own audiences and computed traits (docs/schema.md). Like the
-- other views they read the ReplacingMergeTrees with argMax(..., version | seq), so they are
-- correct right after an insert.

-- The current definitions: newest version per key, deleted ones left out.
CREATE OR REPLACE VIEW ${db}.definitions_current AS
SELECT
    key,
    state.1 AS kind,
    state.2 AS computation_id,
    state.3 AS revision,
    JSONExtractString(state.4, 'name') AS name,
    state.4 AS body,
    state.5 AS created_at,
    state.6 AS updated_at
FROM
(
    SELECT key, argMax((kind, computation_id, revision, body, created_at, updated_at, deleted), version) AS state
    FROM ${db}.definitions
    GROUP BY key
)
WHERE state.7 = 0;

-- Membership now: one row per (profile, current Feedhouse audience) that ever had the profile
-- as a member, with the last entry and exit.
CREATE OR REPLACE VIEW ${db}.computed_audience_membership AS
SELECT
    v.profile_id AS profile_id,
    d.key AS audience,
    v.state.1 = 1 AS member,
    v.state.2 AS entered_at,
    v.state.3 AS exited_at,
    v.state.4 AS changed_at
FROM
(
    SELECT computation_id, profile_id, argMax((member, entered_at, exited_at, changed_at), seq) AS state
    FROM ${db}.computed_current
    GROUP BY computation_id, profile_id
) AS v
INNER JOIN ${db}.definitions_current AS d ON d.computation_id = v.computation_id
WHERE d.kind = 'audience';

-- Membership history: every entry and exit, with what made the evaluator look (events,
-- window, definition, deleted) and the messageId its messages carried.
CREATE OR REPLACE VIEW ${db}.computed_audience_history AS
SELECT
    changed_at,
    profile_id,
    definition_key AS audience,
    computation_id,
    if(member = 1, 'entered', 'exited') AS change,
    cause,
    user_id,
    anonymous_id,
    message_id,
    seq
FROM ${db}.computed_changes
WHERE kind = 'audience';

-- Computed trait values now (JSON text), one row per (profile, current trait) with a value.
CREATE OR REPLACE VIEW ${db}.computed_trait_values AS
SELECT v.profile_id AS profile_id, d.key AS trait, v.state.1 AS value, v.state.2 AS changed_at
FROM
(
    SELECT computation_id, profile_id, argMax((value, changed_at), seq) AS state
    FROM ${db}.computed_current
    GROUP BY computation_id, profile_id
) AS v
INNER JOIN ${db}.definitions_current AS d ON d.computation_id = v.computation_id
WHERE d.kind = 'trait' AND v.state.1 != '';

-- Audiences of both systems: Engage's (identify calls) and Feedhouse's, marked.
CREATE OR REPLACE VIEW ${db}.all_audience_membership AS
SELECT profile_id, audience, 'engage' AS computed_by, toUInt8(member) AS member, entered_at, exited_at
FROM ${db}.audience_membership
UNION ALL
SELECT profile_id, audience, 'feedhouse' AS computed_by, toUInt8(member) AS member, entered_at, exited_at
FROM ${db}.computed_audience_membership;
