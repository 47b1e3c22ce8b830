"""Dagster assets by domain.

`backfill_policy` is marked beta in Dagster 1.13; we rely on it deliberately (a backfill fetches a
month of days per run), so its warning is silenced here instead of being printed at every load.
"""

import warnings

warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy` of function `asset` is currently in beta")
# Dagster's own @sensor passes `owners` through to a beta initializer parameter on every load.
warnings.filterwarnings("ignore", message=r"Parameter `owners` of initializer `SensorDefinition.__init__`")
