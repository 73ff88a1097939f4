"""What every stage shares, below all of them: the shard store, the build context, progress bars, the record join."""
