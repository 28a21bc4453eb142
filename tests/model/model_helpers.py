"""Constants shared by the model tests."""

SAMPLE_CONFIGS = ("babyai-go-to", "metaworld-reach", "mujoco-hopper", "atari-breakout")
# Short contexts keep the tests fast; real runs use JAT's 256 (32 for Atari).
SHORT_CONTEXTS = {"atari": 8, "babyai": 32, "dmc": 32, "metaworld": 32, "mujoco": 32}
