"""The warehouse tables the caches read, as external assets: written by the rest of Nova (the
contract's tables), never by Nova Jobs, so the UI's asset graph runs from them to the caches."""

import dagster as dg

from nova_jobs.catalog import FOLLOWS, POST_EVENTS, POSTS, USER_BLOCKS

_DESCRIPTIONS = {
    POST_EVENTS: "Engagement events (view, like, comment, share) per post and user, with their time.",
    POSTS: "Every post with its author and creation time.",
    FOLLOWS: "Who follows whom, since when.",
    USER_BLOCKS: "Blocks between users; no cache suggests or shows across one, in either direction.",
}

warehouse_tables = [
    dg.AssetSpec(key, group_name="warehouse", kinds={"clickhouse"}, owners=["team:analytics"], description=text)
    for key, text in _DESCRIPTIONS.items()
]
