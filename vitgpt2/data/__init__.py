"""Data, in the order it flows: sources (one row per image) -> preprocessing (cached uint8 pixels and caption ids)
-> views (what the Trainer iterates) -> collator (batches)."""
