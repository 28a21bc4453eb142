"""The rollout stage: planning, collecting and recording episodes into shards, resuming and repairing a
run.
"""
