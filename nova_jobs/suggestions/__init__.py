import dagster as dg

from nova_jobs.suggestions.assets import build_suggested_users_asset
from nova_jobs.suggestions.checks import holdout_recall_check
from nova_jobs.suggestions.jobs import build_suggestions_definitions

defs: dg.Definitions = build_suggestions_definitions(build_suggested_users_asset(), [holdout_recall_check])
