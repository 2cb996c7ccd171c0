"""The evaluator's SQL: which profiles a set of ids concerns, their values, and current values.

Statements are module-level constants bound with ``{name:Type}`` parameters (``feedhouse.read.sql``);
the evaluation query is one of two fixed shells (a scope of profiles, or every profile) into which
:func:`evaluation_sql` splices the expression lists of a compiled program
(``audiences.compile``), themselves made of fixed fragments and bound parameters.

Profiles are resolved at query time, as everywhere in Feedhouse (docs/identity.md): an id's
profile is its row in the key-value mirror ``id_mapping_kv`` (itself when unmapped; a backfill
joins ``argMax(profile_id, version)`` over ``id_mapping`` instead, one scan for every id); a
profile's ids are the verified ``id_mapping_by_profile`` rows plus its canonical id; a pass reads
its ids' states from ``id_state_kv`` (docs/schema.md). Events are
deduplicated per (person_key, message_id) with ``argMax(..., received_at)`` over the columns a
program reads (2-3x cheaper than FINAL on the same rows, measured at 1M events).
"""

from __future__ import annotations

from collections.abc import Sequence

from feedhouse.audiences.compile import Program
from feedhouse.read.sql import compose

# ---- scope: from touched ids to profiles and their ids --------------------------------------

# Lookups over the ids written to the scratch table ``audience_scope`` (see SCOPE_IDS below).
OWNERS_SQL = "SELECT id, profile_id FROM id_mapping_kv WHERE id IN (SELECT id FROM audience_scope)"

# Every profile that ever held one of these ids (stale rows included, on purpose): when an id
# moves to another profile, the one it left must be evaluated again.
FORMER_OWNERS_SQL = """
SELECT DISTINCT profile_id FROM id_mapping_by_profile WHERE id IN {ids:Array(String)}
"""

# Every id of the profiles written to ``audience_scope``.
PROFILE_IDS_SQL = """
SELECT id, profile_id AS owner
FROM id_mapping_kv
WHERE id IN (SELECT id FROM id_mapping_by_profile WHERE profile_id IN (SELECT id FROM audience_scope))
  AND owner IN (SELECT id FROM audience_scope)
"""

# ---- evaluation shells ------------------------------------------------------------------------

# The scope of a pass (its ids and the profile of each) is in ``audience_scope``, written just
# before the query: as array parameters, thousands of ids made planning cost 0.3-0.6 s of a
# ~1 s pass (measured at 9,000 ids); from a table, 0.04-0.13 s.
SCOPE_IDS = "(SELECT groupArray(id) FROM audience_scope)"
SCOPE_OWNERS = "(SELECT groupArray(owner) FROM audience_scope)"
SCOPE_MASKS = "(SELECT groupArray(mask) FROM audience_scope)"
# A scope whose profiles are not all evaluated whole: each id's row of ``audience_scope`` holds
# the mask of the kinds its profile's evaluated outputs read (audiences.evaluate), and only
# events of those kinds are read (every counted kind for a profile evaluated whole).
SCOPE_KINDS = """
    AND bitAnd($row_kinds, transform(person_key, $scope_ids, $scope_masks, toUInt64(0))) != 0"""

# The scope's events, one row per messageId, with the profile each belongs to ($columns: the
# optional JSON columns the program reads).
SCOPE_EVENTS = """
SELECT
    transform(person_key, $scope_ids, $scope_owners, '') AS pid,
    any(type) AS type, any(event) AS event, argMax(timestamp, received_at) AS timestamp,
    message_id $columns
FROM
(
    -- Filtered apart from the grouping: its aliases would shadow the columns in WHERE.
    SELECT person_key, message_id, type, event, timestamp, received_at $raw
    FROM events
    WHERE person_key IN (SELECT id FROM audience_scope) AND ($prefilter) $kinds
)
GROUP BY person_key, message_id
"""

CURRENT_MAPPING = "(SELECT id, argMax(profile_id, version) AS profile_id FROM id_mapping GROUP BY id)"

ALL_EVENTS = compose(
    """
SELECT if(m.profile_id = '', e.person_key, m.profile_id) AS pid, e.*
FROM
(
    SELECT
        person_key, any(type) AS type, any(event) AS event, argMax(timestamp, received_at) AS timestamp,
        message_id $$columns
    FROM
    (
        SELECT person_key, message_id, type, event, timestamp, received_at $$raw
        FROM events
        WHERE person_key != '' AND ($$prefilter)
    )
    GROUP BY person_key, message_id
) AS e
LEFT JOIN $mapping AS m ON m.id = e.person_key
""",
    mapping=CURRENT_MAPPING,
)

SCOPE_STATES = """
SELECT transform(id, $scope_ids, $scope_owners, '') AS pid, id, traits, trait_times
FROM id_state_kv
WHERE id IN (SELECT id FROM audience_scope)
"""

ALL_STATES = compose(
    """
SELECT
    if(m.profile_id = '', s.id, m.profile_id) AS pid, s.id AS id, s.traits AS traits,
    s.trait_times AS trait_times
FROM
(
    SELECT id, argMax(traits, version) AS traits, argMax(trait_times, version) AS trait_times
    FROM id_state
    GROUP BY id
) AS s
LEFT JOIN $mapping AS m ON m.id = s.id
""",
    mapping=CURRENT_MAPPING,
)

# A profile is identified (its canonical id is a userId) when it has an event whose userId is
# that id: the canonical id of an identified profile is its surviving userId (docs/identity.md).
ALL_IDENTIFIED = """
SELECT DISTINCT person_key AS pid FROM events WHERE person_key != '' AND user_id = person_key
"""

# Rows: (profile_id, identified, output...). $identified is a join of the identified profiles
# (a backfill: every profile at once) or nothing (a pass: looked up afterwards, for the few
# profiles that changed, which is cheaper than reading the scope's events a second time).
EVALUATION = """
SELECT profile_id, $identified_column AS identified $outputs
FROM
(
    SELECT if(ev.pid != '', ev.pid, tr.pid) AS profile_id $aggregates
    FROM (SELECT pid $event_aggregates FROM ($events) GROUP BY pid) AS ev
    FULL OUTER JOIN (SELECT pid $state_aggregates FROM ($states) GROUP BY pid) AS tr ON tr.pid = ev.pid
    WHERE profile_id != ''
) AS profile
$identified_join
$where
"""
IDENTIFIED_JOIN = compose(
    "LEFT JOIN ($identified) AS idf ON idf.pid = profile.profile_id", identified=ALL_IDENTIFIED
)


def evaluation_sql(
    program: Program, *, everything: bool, only_present: Sequence[str] = (), masked: bool = False
) -> str:
    """The query computing ``program`` for the profiles of the scope in ``audience_scope``, or
    for every profile when ``everything``. Rows: (profile_id, identified, output...);
    ``identified`` is only computed when ``everything`` (else 0: see :data:`EVALUATION`).
    ``masked``: the scope's masks limit the events read (:data:`SCOPE_KINDS`).

    ``only_present`` (the kind of each output: ``audience`` or ``trait``) keeps only rows where
    some output has a value (a member, a trait with a value): what a backfill needs.
    """
    columns = raw = ""
    for name, used in (("properties", program.uses_properties), ("traits", program.uses_traits)):
        if used:
            columns += f", argMax({name}, received_at) AS {name}"
            raw += f", {name}"
    scope = {"scope_ids": SCOPE_IDS, "scope_owners": SCOPE_OWNERS}
    if everything:
        events = compose(ALL_EVENTS, columns=columns, raw=raw, prefilter=program.prefilter)
        states = ALL_STATES
    else:
        kinds = ""
        if masked and program.row_kinds:
            kinds = compose(SCOPE_KINDS, row_kinds=program.row_kinds, scope_masks=SCOPE_MASKS, **scope)
        events = compose(
            SCOPE_EVENTS, columns=columns, raw=raw, prefilter=program.prefilter, kinds=kinds, **scope
        )
        states = compose(SCOPE_STATES, **scope)
    if not program.state_aggregates:
        states = states + " LIMIT 0"  # nothing to merge: the join contributes no profiles
    event_aggregates = "".join(f", {sql} AS {alias}" for alias, sql in program.event_aggregates)
    state_aggregates = "".join(f", {sql} AS {alias}" for alias, sql in program.state_aggregates)
    aliases = [alias for alias, _ in program.event_aggregates + program.state_aggregates]
    outputs = "".join(f", {sql} AS out{index}" for index, (_, sql) in enumerate(program.outputs))
    where = ""
    if only_present:
        tests = [
            f"out{i} = 1" if kind == "audience" else f"out{i} IS NOT NULL"
            for i, kind in enumerate(only_present)
        ]
        where = "WHERE " + " OR ".join(tests)
    return compose(
        EVALUATION,
        outputs=outputs,
        aggregates="".join(f", {alias}" for alias in aliases),
        event_aggregates=event_aggregates,
        events=events,
        state_aggregates=state_aggregates,
        states=states,
        identified_column="idf.pid != ''" if everything else "0",
        identified_join=IDENTIFIED_JOIN if everything else "",
        where=where,
    )


# ---- window expiries --------------------------------------------------------------------------

# Ids with an event that a window stopped counting between two evaluations: for each window W,
# events with timestamp in (previous - W, now - W] ($prefilter: the windowed selectors).
EXPIRING_SQL = """
SELECT DISTINCT person_key
FROM events
WHERE person_key != ''
    AND timestamp > fromUnixTimestamp64Micro({low:Int64}, 'UTC')
    AND timestamp <= fromUnixTimestamp64Micro({high:Int64}, 'UTC')
    AND arrayExists(
        (lo, hi) -> toUnixTimestamp64Micro(timestamp) > lo AND toUnixTimestamp64Micro(timestamp) <= hi,
        {lows:Array(Int64)}, {highs:Array(Int64)}
    )
    AND ($prefilter)
"""


def expiring_sql(program: Program) -> str:
    return compose(EXPIRING_SQL, prefilter=program.expiry_prefilter)


# ---- current values ---------------------------------------------------------------------------

# What a diff needs of the newest change: see audiences.changes.Current.
CURRENT_COLUMNS = (
    "member, value, change_index, toUnixTimestamp64Micro(entered_at), toUnixTimestamp64Micro(exited_at),"
    " user_id, anonymous_id"
)

# The newest change of each (definition, profile) for these profiles: what a diff starts from.
CURRENT_OF_PROFILES_SQL = compose(
    """
SELECT computation_id, profile_id, argMax(($columns), seq)
FROM computed_by_profile
WHERE profile_id IN {profiles:Array(String)} AND computation_id IN {computations:Array(String)}
GROUP BY computation_id, profile_id
""",
    columns=CURRENT_COLUMNS,
)

# Every profile with a recorded change of one definition (a backfill's diff: the present ones
# may exit, the others continue their change numbers when they enter again).
CURRENT_OF_DEFINITION_SQL = compose(
    """
SELECT profile_id, argMax(($columns), seq)
FROM computed_current
WHERE computation_id = {computation:String}
GROUP BY profile_id
""",
    columns=CURRENT_COLUMNS,
)

# The newest seq ever numbered. Deleting a person (feedhouse.privacy) removes their changes from
# the log, perhaps the newest ones, so the number reached is kept as a floor in evaluator_state
# first: numbering never goes back (a reused seq would reuse an insert's deduplication token
# too, and ClickHouse would drop the new rows as a repeat). Senders' heads read it as well.
MAX_SEQ_SQL = """
SELECT greatest(
    (SELECT max(seq) FROM computed_changes),
    (SELECT toUInt64(greatest(0, max(value))) FROM evaluator_state WHERE name = 'seq_floor')
)
"""
KEEP_SEQ_FLOOR_SQL = f"""
INSERT INTO evaluator_state (name, value, version)
SELECT 'seq_floor', toInt64(({MAX_SEQ_SQL})), toUnixTimestamp64Micro(now64(6))
"""

IDENTIFIED_SQL = """
SELECT DISTINCT person_key FROM events WHERE person_key IN {ids:Array(String)} AND user_id = person_key
"""
