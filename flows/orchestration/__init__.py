"""Prefect operations, apart from the flows: the local server and its supervisor (``server``), crash
detection and alerts (``automations``), runs of a flow inside Prefect: states, continuations,
superseding (``glue``), the run's artifacts (``artifacts``) and fan-out over the work pool
(``fan_out``). The flows and their commands are the modules of ``flows/``; ``flows/deployments.py``
names the deployments (its path is what registered deployments point at)."""
