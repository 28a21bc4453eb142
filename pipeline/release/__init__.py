"""Publishing: dataset cards, the Hub and folder targets, expert and model repos, loading a published
dataset.
"""
