"""Stage 6, views: the only place rows are selected; one builder per published training table."""
